"""The environment of a gateway process, built from settings-like values.

One place for `gateway dev`, the tests, the JavaScript tests' server and bench/: each names the
settings it wants as Settings field names (`database_url=...`), never as hand-spelled variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePath

__all__ = ["environ_value", "gateway_environ"]

PREFIX = "GATEWAY_"


def environ_value(value: object) -> str:
    """A setting as its environment variable spells it (bytes decoded, lists comma-joined)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple, frozenset, set)):
        return ",".join(environ_value(v) for v in value)
    if isinstance(value, (str, int, float, PurePath)):
        return str(value)
    raise TypeError(f"no environment spelling for {type(value).__name__}")


def gateway_environ(
    base: Mapping[str, str] | None = None, *, keep_gateway: bool = False, **settings: object
) -> dict[str, str]:
    """`base` (default os.environ) with GATEWAY_<NAME> set for each setting (None unsets it).

    The base's own GATEWAY_* variables are dropped unless `keep_gateway`, so a shell's settings
    never leak into a test's gateway.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if keep_gateway or not k.startswith(PREFIX)}
    for name, value in settings.items():
        key = PREFIX + name.upper()
        if value is None:
            env.pop(key, None)
        else:
            env[key] = environ_value(value)
    return env
