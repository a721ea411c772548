"""The payout pipeline: dispatch, the TON and backup loops, outcomes, deposits.

A walk through it, file by file: docs/ARCHITECTURE.md."""
