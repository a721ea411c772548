"""AML/KYC screening: a sanctions list from a CSV file and a commercial screening API."""
