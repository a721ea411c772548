"""Stripe backup rail: PaymentIntents / Checkout Sessions in, Connect transfers or payouts out."""
