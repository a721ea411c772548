"""Bank transfer backup rail: instructions in, ISO 20022 pain.001 files out, CAMT.053 import."""
