data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  prefix     = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  container_port = 8000

  # Autoscaling exactly as the deployment guide fixes it: scale out at CPU > 70 %,
  # memory > 80 %, PendingTransactions > 50; between 2 and 10 tasks per service.
  scaling = {
    min_tasks         = 2
    max_tasks         = 10
    cpu_target_pct    = 70
    memory_target_pct = 80
    pending_scale_out = 50
  }

  # Non-secret settings of both services (names as in .env.example). Secrets: secrets.tf.
  service_settings = {
    ENVIRONMENT                = "production"
    HOST                       = "0.0.0.0"
    PORT                       = tostring(local.container_port)
    LOG_JSON                   = "true"
    DATA_DIR                   = "/data"
    BOOTSTRAP_DEMO             = "false"
    TON_NETWORK                = var.ton_network
    PAYMENT_PROCESSOR_ADDRESS  = var.payment_processor_address
    USDT_JETTON_MASTER         = var.usdt_jetton_master
    STRIPE_PUBLISHABLE_KEY     = var.stripe_publishable_key
    PAYPAL_CLIENT_ID           = var.paypal_client_id
    PAYMENT_ALERT_EMAIL        = var.payment_alert_email
    SMTP_PORT                  = tostring(var.smtp_port)
    AWS_REGION                 = var.aws_region
    CLOUDWATCH_ENABLED         = "true"
    CLOUDWATCH_NAMESPACE       = var.cloudwatch_namespace
    ALERT_SUCCESS_RATE_MIN_PCT = tostring(var.alarm_success_rate_min_pct)
    ALERT_PENDING_MAX          = tostring(var.alarm_pending_max)
    DASHBOARD_COOKIE_SECURE    = "true"
    # aws-kms: the key new envelopes are sealed with (an envelope names the key it opens with)
    TON_KEY_KMS_KEY_ID = var.hot_wallet_kek == "aws-kms" ? aws_kms_key.hot_wallet.arn : ""
  }
  service_environment = merge(var.extra_environment, local.service_settings)

  image = "${aws_ecr_repository.tonrail.repository_url}:${var.image_tag}"
}

resource "aws_ecs_cluster" "main" {
  name = local.prefix

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# One module, two services: the same image and settings; the command, the roles and the
# secrets differ (only the worker signs, so only it gets the hot-wallet key: secrets.tf).
module "api" {
  source = "./modules/ecs_service"

  name               = "${local.prefix}-api"
  region             = var.aws_region
  cluster_id         = aws_ecs_cluster.main.id
  cluster_name       = aws_ecs_cluster.main.name
  image              = local.image
  command            = ["serve"] # the image's ENTRYPOINT is `tonrail`: runs `tonrail serve`
  cpu                = var.api_cpu
  memory             = var.api_memory
  environment        = local.service_environment
  secrets            = local.service_secrets["api"]
  execution_role_arn = aws_iam_role.execution["api"].arn
  task_role_arn      = aws_iam_role.task["api"].arn
  subnet_ids         = aws_subnet.private[*].id
  security_group_ids = [aws_security_group.tasks.id]
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days

  container_port   = local.container_port
  target_group_arn = aws_lb_target_group.api.arn

  min_tasks         = local.scaling.min_tasks
  max_tasks         = local.scaling.max_tasks
  cpu_target_pct    = local.scaling.cpu_target_pct
  memory_target_pct = local.scaling.memory_target_pct

  depends_on = [aws_lb_listener.https]
}

module "worker" {
  source = "./modules/ecs_service"

  name               = "${local.prefix}-worker"
  region             = var.aws_region
  cluster_id         = aws_ecs_cluster.main.id
  cluster_name       = aws_ecs_cluster.main.name
  image              = local.image
  command            = ["worker"] # `tonrail worker`
  cpu                = var.worker_cpu
  memory             = var.worker_memory
  environment        = local.service_environment
  secrets            = local.service_secrets["worker"]
  execution_role_arn = aws_iam_role.execution["worker"].arn
  task_role_arn      = aws_iam_role.task["worker"].arn
  subnet_ids         = aws_subnet.private[*].id
  security_group_ids = [aws_security_group.tasks.id]
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days

  min_tasks         = local.scaling.min_tasks
  max_tasks         = local.scaling.max_tasks
  cpu_target_pct    = local.scaling.cpu_target_pct
  memory_target_pct = local.scaling.memory_target_pct

  # The workers drain the payment backlog: they also scale out on the service's own metric.
  pending_scale_out = {
    namespace   = var.cloudwatch_namespace
    metric_name = "PendingTransactions"
    threshold   = local.scaling.pending_scale_out
  }
}
