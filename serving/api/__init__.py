"""BrandForge serving: api."""
