"""Settings read from the environment once, at start-up, and validated there.

`model.py` holds Settings and the registry of every GATEWAY_* variable (one entry per field),
`parsers.py` the value kinds, `load.py` the reading, the cross-field rules and the warnings.
"""

from gateway.settings.load import (
    database_url_from_env,
    load_settings,
    log_config_from_env,
    redis_target_from_env,
    statement_cache_size_from_env,
    unknown_variable_warnings,
    value_from_env,
)
from gateway.settings.model import (
    KNOWN_NAMES,
    MAX_LEEWAY,
    MIN_SECRET_BYTES,
    REDIS_MODES,
    VARIABLES,
    RedisTarget,
    Settings,
)
from gateway.settings.parsers import (
    LOG_FORMATS,
    LOG_LEVELS,
    SUPPORTED_ALGORITHMS,
    ConfigError,
)

__all__ = [
    "KNOWN_NAMES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_LEEWAY",
    "MIN_SECRET_BYTES",
    "REDIS_MODES",
    "SUPPORTED_ALGORITHMS",
    "VARIABLES",
    "ConfigError",
    "RedisTarget",
    "Settings",
    "database_url_from_env",
    "load_settings",
    "log_config_from_env",
    "redis_target_from_env",
    "statement_cache_size_from_env",
    "unknown_variable_warnings",
    "value_from_env",
]
