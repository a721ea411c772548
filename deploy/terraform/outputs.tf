output "alb_dns_name" {
  description = "DNS name of the load balancer: point the service's domain (CNAME or alias) here."
  value       = aws_lb.main.dns_name
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the payment metrics."
  value       = "https://${var.aws_region}.console.aws.amazon.com/cloudwatch/home?region=${var.aws_region}#dashboards:name=${aws_cloudwatch_dashboard.payments.dashboard_name}"
}

output "ecr_repository_url" {
  description = "Repository the deploy script pushes the image to (tag = git SHA)."
  value       = aws_ecr_repository.tonrail.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster of both services."
  value       = aws_ecs_cluster.main.name
}

output "api_service_name" {
  description = "ECS service running `tonrail serve` behind the load balancer."
  value       = module.api.service_name
}

output "worker_service_name" {
  description = "ECS service running `tonrail worker`."
  value       = module.worker.service_name
}

output "api_task_definition_arn" {
  description = "Task definition of the api; the deploy script runs `tonrail migrate` as a one-off task of it."
  value       = module.api.task_definition_arn
}

output "worker_task_definition_arn" {
  description = "Task definition of the worker."
  value       = module.worker.task_definition_arn
}

output "private_subnet_ids" {
  description = "Private subnets, for one-off tasks (migrate)."
  value       = aws_subnet.private[*].id
}

output "task_security_group_id" {
  description = "Security group of the tasks, for one-off tasks (migrate)."
  value       = aws_security_group.tasks.id
}

output "secret_arns" {
  description = "Secrets Manager ARN of every secret, by setting name (put values with aws secretsmanager put-secret-value)."
  value       = { for name, s in aws_secretsmanager_secret.service : name => s.arn }
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "cloudwatch_namespace" {
  description = "Namespace of the service's payment metrics."
  value       = var.cloudwatch_namespace
}

output "hot_wallet_kms_key_arn" {
  description = "KMS key that wraps the hot wallet's data key: TON_KEY_KMS_KEY_ID for `tonrail keys init-wallet` / `keys rewrap` (operator credentials; the worker may only kms:Decrypt)."
  value       = aws_kms_key.hot_wallet.arn
}

output "required_secret_names" {
  description = "Secrets that must hold a value before the tasks start (TON_KEY_PASSPHRASE only with hot_wallet_kek = \"scrypt\"); the deploy script checks them."
  value       = concat(local.required_secrets, local.kek_secrets)
}
