"""BrandForge serving: campaigns."""
