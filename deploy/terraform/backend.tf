# Remote state: S3 (versioned, encrypted) with a DynamoDB table for locking. The settings are
# left out on purpose (partial configuration) so one code base serves testnet and mainnet:
#   terraform init -backend-config=backend.hcl      (copy backend.hcl.example; README.md)
terraform {
  backend "s3" {}
}
