"""BrandForge shared core: params, settings, brand kit, base pipeline loading, CLI."""
