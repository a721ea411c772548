"""The local TON network: real TVM, SQLite state, toncenter-compatible HTTP API."""
