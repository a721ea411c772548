# Every secret the service reads (src/tonrail/settings.py) lives in Secrets Manager, encrypted
# with this deployment's key, and reaches the tasks as ECS `secrets` (valueFrom), never as
# plain environment. DATABASE_URL and REDIS_URL are written here from generated credentials;
# the operator puts every other value once with `aws secretsmanager put-secret-value`
# (README.md), so none of them passes through variables or the state.

locals {
  generated_secrets = ["DATABASE_URL", "REDIS_URL"]
  required_secrets  = ["JWT_SECRET", "TON_API_KEY", "TON_MASTER_KEY"]
  # The secret the envelope's key-encryption key needs, by kind (var.hot_wallet_kek): an
  # aws-kms envelope names its KMS key and opens with the worker's kms:Decrypt, so no
  # passphrase secret is created, required or given to any task.
  kek_secret_names = {
    "aws-kms" = []
    "scrypt"  = ["TON_KEY_PASSPHRASE"]
  }
  kek_secrets = local.kek_secret_names[var.hot_wallet_kek]
  optional_secret_names = [
    "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "PAYPAL_CLIENT_SECRET",
    "SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "SMTP_PASSWORD", "METRICS_TOKEN",
    "RATE_HTTP_API_KEY", "SCREENING_HTTP_API_KEY",
  ]
  secret_names = concat(local.generated_secrets, local.required_secrets, local.kek_secrets, local.optional_secret_names)

  # What the tasks receive: the generated and required ones, the KEK's, plus the optional
  # ones enabled.
  # The hot-wallet key and its passphrase reach only the worker, which signs: the
  # internet-facing api never holds them (its roles cannot read them either, iam.tf).
  signing_secrets   = ["TON_MASTER_KEY", "TON_KEY_PASSPHRASE"]
  task_secret_names = concat(local.generated_secrets, local.required_secrets, local.kek_secrets, sort(tolist(var.optional_secrets)))
}

# The names above depend on variables only (tests/deploy evaluates them with Terraform); the
# ARNs each service receives:
locals {
  service_secrets = {
    api = {
      for name in local.task_secret_names :
      name => aws_secretsmanager_secret.service[name].arn if !contains(local.signing_secrets, name)
    }
    worker = {
      for name in local.task_secret_names : name => aws_secretsmanager_secret.service[name].arn
    }
  }
}

resource "aws_secretsmanager_secret" "service" {
  # checkov:skip=CKV2_AWS_57:No rotation Lambda: these are third-party keys (Stripe, PayPal, toncenter...) and keys the service derives from; they are rotated by the procedure in docs/DEPLOY.md.
  for_each = toset(local.secret_names)

  name                    = "${local.prefix}/${each.key}"
  description             = "tonrail ${var.environment}: ${each.key}"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 30
}

resource "random_password" "db" {
  length  = 40
  special = false
}

resource "random_password" "redis" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.service["DATABASE_URL"].id
  secret_string = "postgresql://${aws_db_instance.main.username}:${random_password.db.result}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/${aws_db_instance.main.db_name}?ssl=require"
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.service["REDIS_URL"].id
  secret_string = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:6379/0"
}
