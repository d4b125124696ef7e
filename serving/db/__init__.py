"""BrandForge serving: db."""
