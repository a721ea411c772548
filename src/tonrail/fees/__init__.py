"""The fee optimizer: network conditions, fee history, the per-payout policy (docs/FEES.md)."""
