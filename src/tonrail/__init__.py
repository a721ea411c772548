"""tonrail: a payment service whose primary rail is TON."""

__version__ = "0.1.0"
