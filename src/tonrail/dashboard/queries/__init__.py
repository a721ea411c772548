"""SQL behind the dashboard pages: read-only queries that aggregate in the database."""
