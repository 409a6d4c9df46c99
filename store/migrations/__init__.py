"""Alembic migrations of the store schema; :func:`store.db.migrate` runs them."""
