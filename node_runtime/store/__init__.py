"""Durable storage behind one interface: SQLite embedded by default, PostgreSQL shared."""
