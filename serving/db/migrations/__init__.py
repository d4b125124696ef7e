"""Alembic revisions of the serving database, run by `serving.db.migrate` (no alembic.ini)."""
