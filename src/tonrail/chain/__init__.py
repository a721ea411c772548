"""TON chain rules: addresses, network presets, payment links; pure, below every domain."""
