output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.service.name
}

output "task_definition_arn" {
  description = "ARN (with revision) of the task definition this apply registered."
  value       = aws_ecs_task_definition.service.arn
}

output "task_definition_family" {
  description = "Family of the task definition."
  value       = aws_ecs_task_definition.service.family
}

output "log_group_name" {
  description = "CloudWatch log group of the service."
  value       = aws_cloudwatch_log_group.service.name
}
