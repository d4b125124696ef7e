"""BrandForge serving: delivery."""
