"""Monitoring: metrics, alert rules, alert store, channels, lockouts, audits."""
