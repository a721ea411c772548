# One customer-managed key for this deployment: RDS, ElastiCache, Secrets Manager, CloudWatch
# Logs, SNS and ECR encrypt with it. IAM policies grant its use (the account statement below);
# the service principals that need it directly are named.

resource "aws_kms_key" "main" {
  description             = "${local.prefix}: database, cache, secrets, logs, alarms, images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key only; the account statement hands control to IAM, as AWS's default key policy does.
  # checkov:skip=CKV_AWS_111:Same: in a key policy Resource "*" means this key.
  # checkov:skip=CKV_AWS_356:Same: in a key policy Resource "*" means this key.
  statement {
    sid       = "AccountAdministersTheKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisDeploymentsLogGroups"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# The hot wallet's key-encryption key (the `aws-kms` envelope kind, docs/SECURITY.md): its own
# key, so that the one grant the worker needs (kms:Decrypt, iam.tf) opens nothing else and
# nothing else's grants open the wallet. IAM policies grant its use, as for the main key;
# `tonrail keys init-wallet` / `keys rewrap` wrap with it (kms:Encrypt) under the operator's
# credentials, never the service's.
resource "aws_kms_key" "hot_wallet" {
  description             = "${local.prefix}: hot wallet key-encryption key (worker: kms:Decrypt only)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.hot_wallet_kms.json
}

resource "aws_kms_alias" "hot_wallet" {
  name          = "alias/${local.prefix}-hot-wallet"
  target_key_id = aws_kms_key.hot_wallet.key_id
}

data "aws_iam_policy_document" "hot_wallet_kms" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key only; the account statement hands control to IAM, as AWS's default key policy does.
  # checkov:skip=CKV_AWS_111:Same: in a key policy Resource "*" means this key.
  # checkov:skip=CKV_AWS_356:Same: in a key policy Resource "*" means this key.
  statement {
    sid       = "AccountAdministersTheKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}
