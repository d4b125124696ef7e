"""One module per schema revision, `NNNN_what.py`, oldest first (Alembic skips this file)."""
