"""A private PostgreSQL server for tests (install.sh, server.py, fixtures.py)."""
