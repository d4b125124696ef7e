"""BrandForge serving: cli."""
