"""Merchant webhooks and the events API: endpoints merchants subscribe, the outbox events
published to them (Standard Webhooks, signed, retried, in order per payment) and
`GET /v1/events`. Not to be confused with webhooks/, the providers' (Stripe, PayPal)
inbound webhooks. See docs/WEBHOOKS.md."""
