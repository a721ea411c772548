resource "aws_ecr_repository" "tonrail" {
  name                 = local.prefix
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

# Keep the last 100 images: enough to roll back many releases, bounded storage.
resource "aws_ecr_lifecycle_policy" "tonrail" {
  repository = aws_ecr_repository.tonrail.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the newest 100 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 100 }
      action       = { type = "expire" }
    }]
  })
}
