"""The serving tier's `brandforge` commands, one module per group (`keys`, `serve`, `rollout`,
`campaign`, `assets`, `db`, `data feedback`, `provenance`), each registered as an entry point
in pyproject.toml and sharing `common` (the --db option, the database session, errors)."""
