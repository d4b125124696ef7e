"""The serving tier: Ray Serve HTTP API, generator, canary rollout, access control."""
