"""Compliance reports: the monthly report (CSV and PDF) and the weekly large-transaction list."""
