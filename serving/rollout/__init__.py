"""BrandForge serving: rollout."""
