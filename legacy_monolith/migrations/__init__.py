"""Alembic migrations of the legacy schema (a package so wheels ship them)."""
