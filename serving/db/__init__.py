"""The serving database: `models` (tables and column types), `engine` (URL, engines, sessions)
and `migrate` (the schema, changed only by the Alembic revisions in `migrations/`)."""
