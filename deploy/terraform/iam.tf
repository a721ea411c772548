# Least privilege, per service. Its execution role (ECS itself) pulls this image, writes its
# log group and reads its secrets; its task role (the service) may publish metrics only in
# its namespace and read only its secrets. The api's roles cannot read the hot-wallet key.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

locals {
  # Each service's roles cover its own log group and secrets (local.service_secrets).
  service_log_group_arns = {
    for svc in keys(local.service_secrets) :
    svc => "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:/ecs/${local.prefix}-${svc}:*"
  }
}

# --- execution roles (ECS: pull, logs, secrets at start) -----------------------------------

resource "aws_iam_role" "execution" {
  for_each = local.service_secrets

  name               = "${local.prefix}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  for_each = local.service_secrets

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }

  statement {
    sid       = "PullThisImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.tonrail.arn]
  }

  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.service_log_group_arns[each.key]]
  }

  statement {
    sid       = "ReadItsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = values(each.value)
  }

  statement {
    sid       = "DecryptThroughSecretsManagerAndEcr"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.aws_region}.amazonaws.com", "ecr.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.service_secrets

  name   = "execution"
  role   = aws_iam_role.execution[each.key].id
  policy = data.aws_iam_policy_document.execution[each.key].json
}

# --- task roles (the service itself) -------------------------------------------------------

resource "aws_iam_role" "task" {
  for_each = local.service_secrets

  name               = "${local.prefix}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  for_each = local.service_secrets

  statement {
    sid       = "PublishPaymentMetricsOnlyInItsNamespace"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resources; the namespace condition is the limit

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.cloudwatch_namespace]
    }
  }

  statement {
    sid       = "ReadOnlyItsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = values(each.value)
  }

  statement {
    sid       = "DecryptThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.service_secrets

  name   = "task"
  role   = aws_iam_role.task[each.key].id
  policy = data.aws_iam_policy_document.task[each.key].json
}

# The worker alone unwraps the hot wallet's data key, once at start (rails/ton/kms_kek.py):
# kms:Decrypt on the hot-wallet key, only with the encryption context tonrail's envelopes
# carry. Not kms:Encrypt (init-wallet and rewrap run with the operator's credentials), not
# kms:DescribeKey (without it tonrail lets Decrypt name a disabled key). The api gets nothing.

data "aws_iam_policy_document" "worker_wallet_key" {
  statement {
    sid       = "UnwrapTheHotWalletKeyOnly"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.hot_wallet.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:tonrail:purpose"
      values   = ["ton-hot-wallet"]
    }
  }
}

resource "aws_iam_role_policy" "worker_wallet_key" {
  name   = "wallet-key"
  role   = aws_iam_role.task["worker"].id
  policy = data.aws_iam_policy_document.worker_wallet_key.json
}

# --- VPC flow logs -------------------------------------------------------------------------

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${local.prefix}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }

  statement {
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

# --- RDS enhanced monitoring ---------------------------------------------------------------

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${local.prefix}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}
