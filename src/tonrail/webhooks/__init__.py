"""Inbound provider webhooks (Stripe, PayPal): verified, stored first, processed idempotently."""
