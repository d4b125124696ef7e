"""BrandForge serving: api/routes."""
