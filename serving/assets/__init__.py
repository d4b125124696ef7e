"""BrandForge serving: assets."""
