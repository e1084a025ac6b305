"""SQL store for SQLite (default) and PostgreSQL, on SQLAlchemy 2 async Core."""
