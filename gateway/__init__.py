"""Embed-token gateway: short-lived signed dashboard tokens for iframes, one tenant at a time.

This module imports nothing, so `gateway migrate` and the admin commands load only what they use.
"""

__version__ = "0.1.0"
