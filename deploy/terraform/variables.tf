# Every input of the deployment. General infrastructure goes in variables.tfvars, the payment
# service's own settings in variables-payments.tfvars (see the *.tfvars.example files and
# README.md). Secrets are never variables: they live in Secrets Manager (secrets.tf).

# --- general -------------------------------------------------------------------------------

variable "aws_region" {
  description = "AWS region to deploy into (the guide's AWS_REGION)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as us-east-1."
  }
}

variable "name" {
  description = "Name prefix of every resource (2-16 lower-case letters, digits and dashes)."
  type        = string
  default     = "tonrail"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.name))
    error_message = "name must be 2-16 lower-case letters, digits or dashes, starting with a letter (load balancer names are short)."
  }
}

variable "environment" {
  description = "Deployment stage: production (mainnet), staging or testnet. Part of every name."
  type        = string
  default     = "production"

  validation {
    condition     = contains(["production", "staging", "testnet"], var.environment)
    error_message = "environment must be production, staging or testnet."
  }
}

# --- network -------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into 2 public and 2 private subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger."
  }
}

variable "availability_zones" {
  description = "The two availability zones of the subnets, in aws_region (named, so the set never changes by itself)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2
    error_message = "availability_zones must name exactly two different zones, e.g. [\"us-east-1a\", \"us-east-1b\"]."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for both private subnets (cheaper, not zone-redundant). Keep false in production."
  type        = bool
  default     = false
}

variable "alb_ingress_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the load balancer on ports 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must list at least one IPv4 CIDR block."
  }
}

variable "ssl_certificate_arn" {
  description = "ACM certificate of the HTTPS listener (the guide's SSL_CERTIFICATE_ARN), in aws_region."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.ssl_certificate_arn))
    error_message = "ssl_certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

# --- containers ----------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the tonrail image in this deployment's ECR repository (the deploy script passes the git SHA)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid image tag other than \"latest\" (tags are immutable: use the git SHA)."
  }
}

variable "api_cpu" {
  description = "CPU units of one api task (Fargate: 256, 512, 1024, 2048, 4096)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.api_cpu)
    error_message = "api_cpu must be 256, 512, 1024, 2048 or 4096."
  }
}

variable "api_memory" {
  description = "Memory (MiB) of one api task; must be a Fargate size valid for api_cpu."
  type        = number
  default     = 1024

  validation {
    condition     = var.api_memory >= 512 && var.api_memory <= 30720
    error_message = "api_memory must be between 512 and 30720 MiB."
  }
}

variable "worker_cpu" {
  description = "CPU units of one worker task (Fargate: 256, 512, 1024, 2048, 4096)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.worker_cpu)
    error_message = "worker_cpu must be 256, 512, 1024, 2048 or 4096."
  }
}

variable "worker_memory" {
  description = "Memory (MiB) of one worker task; must be a Fargate size valid for worker_cpu."
  type        = number
  default     = 1024

  validation {
    condition     = var.worker_memory >= 512 && var.worker_memory <= 30720
    error_message = "worker_memory must be between 512 and 30720 MiB."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the service, VPC flow and WAF logs (at least a year)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention of at least 365 days (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

# --- PostgreSQL (RDS) ----------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL database."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS instance class such as db.t4g.medium."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version (14 or newer, as the guide requires)."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.db_engine_version)) && try(tonumber(split(".", var.db_engine_version)[0]) >= 14, false)
    error_message = "db_engine_version must be PostgreSQL 14 or newer, e.g. 16."
  }
}

variable "db_allocated_storage" {
  description = "Initial storage of the database, GiB."
  type        = number
  default     = 50

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 65536
    error_message = "db_allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling of the database, GiB (at least db_allocated_storage)."
  type        = number
  default     = 500

  validation {
    condition     = var.db_max_allocated_storage >= 20 && var.db_max_allocated_storage <= 65536
    error_message = "db_max_allocated_storage must be between 20 and 65536 GiB."
  }
}

variable "db_backup_retention_days" {
  description = "Days of automated RDS backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 7 and 35."
  }
}

# --- Redis (ElastiCache) -------------------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type of the two Redis nodes (primary and replica)."
  type        = string
  default     = "cache.t4g.small"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "redis_node_type must be an ElastiCache node type such as cache.t4g.small."
  }
}

variable "redis_engine_version" {
  description = "Redis engine version (6 or newer, as the guide requires)."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.redis_engine_version)) && try(tonumber(split(".", var.redis_engine_version)[0]) >= 6, false)
    error_message = "redis_engine_version must be 6.x or newer, e.g. 7.1."
  }
}

# --- alerting ------------------------------------------------------------------------------

variable "payment_alert_email" {
  description = "E-mail address subscribed to the alarm topic (the guide's PAYMENT_ALERT_EMAIL); also given to the service. Empty = no e-mail subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.payment_alert_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.payment_alert_email))
    error_message = "payment_alert_email must be an e-mail address or empty."
  }
}

variable "alarm_https_endpoints" {
  description = "HTTPS endpoints subscribed to the alarm topic, e.g. a PagerDuty CloudWatch integration URL."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for u in var.alarm_https_endpoints : startswith(u, "https://")])
    error_message = "alarm_https_endpoints must be https:// URLs."
  }
}

variable "alarm_http_5xx_max" {
  description = "5xx responses (load balancer's or the api's own) per 5 minutes above which the 5xx alarm fires."
  type        = number
  default     = 10

  validation {
    condition     = var.alarm_http_5xx_max >= 0
    error_message = "alarm_http_5xx_max must not be negative."
  }
}

# --- the payment service (variables-payments.tfvars) ---------------------------------------

variable "ton_network" {
  description = "TON network the service pays on (TON_NETWORK): testnet for the rehearsal, mainnet for production."
  type        = string

  validation {
    condition     = contains(["testnet", "mainnet"], var.ton_network)
    error_message = "ton_network must be testnet or mainnet."
  }
}

variable "hot_wallet_kek" {
  description = "Key-encryption key of the hot wallet's envelope (TON_MASTER_KEY): \"aws-kms\" (wrapped with this deployment's hot-wallet KMS key, TON_KEY_KMS_KEY_ID; no passphrase secret exists) or \"scrypt\" (a passphrase, the TON_KEY_PASSPHRASE secret). docs/SECURITY.md."
  type        = string
  default     = "scrypt"

  validation {
    condition     = contains(["aws-kms", "scrypt"], var.hot_wallet_kek)
    error_message = "hot_wallet_kek must be aws-kms or scrypt."
  }
}

variable "payment_processor_address" {
  description = "Hot wallet (payment processor) address the service pays from (PAYMENT_PROCESSOR_ADDRESS)."
  type        = string
  default     = ""
}

variable "usdt_jetton_master" {
  description = "USDT jetton master address (USDT_JETTON_MASTER); empty = the network preset's."
  type        = string
  default     = ""
}

variable "stripe_publishable_key" {
  description = "Stripe publishable key (STRIPE_PUBLISHABLE_KEY; public, so not a secret). Empty = Stripe off."
  type        = string
  default     = ""

  validation {
    condition     = var.stripe_publishable_key == "" || can(regex("^pk_(live|test)_", var.stripe_publishable_key))
    error_message = "stripe_publishable_key must start with pk_live_ or pk_test_ (or be empty)."
  }
}

variable "paypal_client_id" {
  description = "PayPal REST client id (PAYPAL_CLIENT_ID; its secret is in Secrets Manager). Empty = PayPal off."
  type        = string
  default     = ""
}

variable "cloudwatch_namespace" {
  description = "CloudWatch namespace the service publishes its payment metrics in (CLOUDWATCH_NAMESPACE); the task may publish only there."
  type        = string
  default     = "Deligate/Payments"

  validation {
    condition     = can(regex("^[A-Za-z0-9./#:_-]+$", var.cloudwatch_namespace)) && !startswith(var.cloudwatch_namespace, "AWS/")
    error_message = "cloudwatch_namespace must be a custom namespace (not AWS/...)."
  }
}

variable "alarm_success_rate_min_pct" {
  description = "SuccessRate (%) below which the success-rate alarm fires; also the service's ALERT_SUCCESS_RATE_MIN_PCT (guide: 95)."
  type        = number
  default     = 95

  validation {
    condition     = var.alarm_success_rate_min_pct > 0 && var.alarm_success_rate_min_pct <= 100
    error_message = "alarm_success_rate_min_pct must be in (0, 100]."
  }
}

variable "alarm_pending_max" {
  description = "PendingTransactions above which the pending alarm fires; also the service's ALERT_PENDING_MAX (guide: 100)."
  type        = number
  default     = 100

  validation {
    condition     = var.alarm_pending_max >= 1
    error_message = "alarm_pending_max must be at least 1."
  }
}

variable "alarm_gas_price_max" {
  description = "GasPrice (nanoton per gas unit, basechain) above which the gas-price alarm fires; default 2 x the documented 400."
  type        = number
  default     = 800

  validation {
    condition     = var.alarm_gas_price_max > 0
    error_message = "alarm_gas_price_max must be positive."
  }
}

variable "optional_secrets" {
  description = "Optional secrets the tasks receive (each must hold a value in Secrets Manager first): any of STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, PAYPAL_CLIENT_SECRET, SLACK_WEBHOOK_URL, PAGERDUTY_ROUTING_KEY, SMTP_PASSWORD, METRICS_TOKEN, RATE_HTTP_API_KEY, SCREENING_HTTP_API_KEY."
  type        = set(string)
  default     = []

  validation {
    condition = alltrue([for s in var.optional_secrets : contains([
      "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "PAYPAL_CLIENT_SECRET",
      "SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "SMTP_PASSWORD", "METRICS_TOKEN",
      "RATE_HTTP_API_KEY", "SCREENING_HTTP_API_KEY",
    ], s)])
    error_message = "optional_secrets may name only STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, PAYPAL_CLIENT_SECRET, SLACK_WEBHOOK_URL, PAGERDUTY_ROUTING_KEY, SMTP_PASSWORD, METRICS_TOKEN, RATE_HTTP_API_KEY, SCREENING_HTTP_API_KEY."
  }
}

variable "smtp_port" {
  description = "Port of the SMTP server the service mails alerts through (SMTP_PORT); the tasks may connect out on it."
  type        = number
  default     = 587

  validation {
    condition     = var.smtp_port > 0 && var.smtp_port < 65536
    error_message = "smtp_port must be a TCP port."
  }
}

variable "extra_environment" {
  description = "Further non-secret settings for both services (see .env.example), e.g. { SMTP_HOST = \"email-smtp.us-east-1.amazonaws.com\" }. Secret names are refused."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_environment), [
      "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "TON_API_KEY", "TON_MASTER_KEY", "TON_KEY_PASSPHRASE",
      "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "PAYPAL_CLIENT_SECRET",
      "SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "SMTP_PASSWORD", "METRICS_TOKEN",
      "RATE_HTTP_API_KEY", "SCREENING_HTTP_API_KEY",
    ])) == 0
    error_message = "extra_environment must not carry secrets: put them in Secrets Manager (optional_secrets)."
  }
}
