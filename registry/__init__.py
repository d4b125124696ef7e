"""The MLflow model registry: versions of `brandforge-<brand>`, aliases, gates and lineage."""
