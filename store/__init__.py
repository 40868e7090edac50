"""Persistence: SQLAlchemy models, sessions, migrations and the scoped queries the server uses."""
