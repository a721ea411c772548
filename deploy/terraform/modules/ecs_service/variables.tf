variable "name" {
  description = "Name of the service, its task-definition family and its log group."
  type        = string
}

variable "region" {
  description = "AWS region (for the awslogs driver)."
  type        = string
}

variable "cluster_id" {
  description = "ARN of the ECS cluster the service runs in."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster (the autoscaling resource id needs it)."
  type        = string
}

variable "image" {
  description = "Full image reference, repository URL and tag."
  type        = string
}

variable "command" {
  description = "Arguments of the image's `tonrail` ENTRYPOINT, e.g. [\"serve\"]."
  type        = list(string)

  validation {
    condition     = length(var.command) > 0
    error_message = "command must not be empty."
  }
}

variable "cpu" {
  description = "CPU units of one task."
  type        = number
}

variable "memory" {
  description = "Memory (MiB) of one task."
  type        = number
}

variable "environment" {
  description = "Non-secret environment variables of the container."
  type        = map(string)
}

variable "secrets" {
  description = "Environment variables filled from Secrets Manager: name => secret ARN."
  type        = map(string)

  validation {
    condition     = alltrue([for arn in values(var.secrets) : can(regex("^arn:aws[a-z-]*:secretsmanager:", arn))])
    error_message = "every secret must be a Secrets Manager ARN."
  }
}

variable "execution_role_arn" {
  description = "Role ECS uses to pull the image, write logs and read the secrets."
  type        = string
}

variable "task_role_arn" {
  description = "Role the service itself runs as."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days the log group keeps the service's logs."
  type        = number
}

variable "container_port" {
  description = "Port the container listens on; null for a service without one (the worker)."
  type        = number
  default     = null
}

variable "target_group_arn" {
  description = "Load-balancer target group of the service; null for none."
  type        = string
  default     = null
}

variable "min_tasks" {
  description = "Fewest tasks (also the desired count at creation)."
  type        = number

  validation {
    condition     = var.min_tasks >= 1
    error_message = "min_tasks must be at least 1."
  }
}

variable "max_tasks" {
  description = "Most tasks autoscaling may run."
  type        = number
}

variable "cpu_target_pct" {
  description = "Average CPU utilisation (%) above which the service scales out."
  type        = number
}

variable "memory_target_pct" {
  description = "Average memory utilisation (%) above which the service scales out."
  type        = number
}

variable "pending_scale_out" {
  description = "Scale out while this custom metric (no dimensions) is above threshold; null = no such policy."
  type = object({
    namespace   = string
    metric_name = string
    threshold   = number
  })
  default = null
}
