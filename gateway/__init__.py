"""Embed-token gateway: short-lived signed dashboard tokens for iframes, one tenant at a time."""

from gateway.app import create_app
from gateway.config import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
