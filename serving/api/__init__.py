"""The HTTP API: routers per resource over one `Services` object (`create_api`)."""
