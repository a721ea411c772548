"""Per-account balances: what each merchant account holds and may pay out (docs/API.md)."""
