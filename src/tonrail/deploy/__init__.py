"""Deployment helpers: every AWS call of scripts/deploy-mainnet-payments.sh and
scripts/rollback-mainnet.sh (aws.py), the post-deploy health checks (health.py) and the
testnet verification record the mainnet deploy requires (record.py). docs/DEPLOY.md."""
