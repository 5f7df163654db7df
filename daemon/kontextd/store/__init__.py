"""Persistence: SQLite in WAL mode. ``db`` owns every SQL statement."""
