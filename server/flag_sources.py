"""The flag source the settings name, apart from the app so that `clinic flags` and
`clinic migrate validate` open it without importing the service (schema, GraphQL)."""

from __future__ import annotations

import logging

from flags.source import FlagSource, LocalFileFlagSource
from flags.unleash_source import UnleashServerFlagSource
from server.settings import Settings

logger = logging.getLogger("server")


def open_flag_source(settings: Settings) -> FlagSource:
    """The Unleash server source when ``UNLEASH_URL`` is set (with its client token, else
    ``SettingsError``), the local flags file otherwise."""
    settings.require_client_token()
    if settings.unleash_url is not None and settings.unleash_api_token is not None:
        logger.info("stages come from the Unleash server", extra={"url": settings.unleash_url})
        return UnleashServerFlagSource(
            url=settings.unleash_url,
            api_token=settings.unleash_api_token,
            app_name=settings.unleash_app_name,
            refresh_interval=settings.unleash_refresh_interval,
            cache_directory=settings.unleash_cache_dir,
            environment=settings.unleash_environment,
        )
    logger.info("stages come from the local flags file", extra={"path": str(settings.flags_file)})
    return LocalFileFlagSource(settings.flags_file, settings.unleash_app_name)
