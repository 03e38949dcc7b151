"""The Trio WhatsApp gateway: HTTP API, config, auth, store, webhooks and CLI."""

from ._config import Config, ConfigError
from .app import create_app

__all__ = ["Config", "ConfigError", "create_app"]
