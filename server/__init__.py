"""The ASGI service: settings, request context, app, health, CLI."""
