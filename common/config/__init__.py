"""Level 0: typed settings, loaded and validated before anything connects.

``settings`` holds the fields (grouped by level), ``loading`` reads them once
per process (retrying for ``CONFIG_WAIT_SECONDS``, then one clear message and
exit 78), ``docs`` makes the README's table. Everything public is here.
"""

from common.config.docs import settings_table
from common.config.loading import (
    EX_CONFIG,
    ConfigError,
    get_settings,
    load_settings,
    load_settings_or_exit,
    read_settings,
    set_settings,
)
from common.config.settings import Settings, describe_settings

__all__ = [
    "EX_CONFIG",
    "ConfigError",
    "Settings",
    "describe_settings",
    "get_settings",
    "load_settings",
    "load_settings_or_exit",
    "read_settings",
    "set_settings",
    "settings_table",
]
