"""The hosted checkout page a customer pays an invoice on: /pay/{invoice_id} (docs/CHECKOUT.md)."""
