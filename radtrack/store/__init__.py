"""SQLite persistence: schema and migrations, the single writer, start-up recovery."""
