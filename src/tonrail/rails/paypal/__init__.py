"""PayPal backup rail: Orders v2 in, Payouts out, OAuth2 client credentials."""
