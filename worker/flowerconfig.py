"""Flower's configuration file (``celery -A worker flower --conf=worker/flowerconfig.py``).

Flower executes this file and reads its globals. Settings are loaded first, so
a bad configuration stops Flower with the same message as every other
process, before it connects to the broker.
"""

# Every global here is read as a Flower option: import under private names.
import logging as _logging

from common.config import get_settings as _get_settings
from common.support.logs import configure_logging as _configure_logging

_settings = _get_settings()
# Flower's (tornado's) log lines in Jenga's format, secrets scrubbed; "none" keeps
# tornado from installing its own handler again after this file is read.
_configure_logging(_settings.log_format, _settings.log_level)
logging = "none"

port = _settings.flower_port
address = "0.0.0.0"
# Tasks stay readable in the dashboard; the broker keeps the truth.
max_tasks = 10000
purge_offline_workers = 300
if _settings.flower_basic_auth is not None:
    basic_auth = [_settings.flower_basic_auth.get_secret_value()]
else:
    # Config validation refuses this in production; in development it is allowed, loudly,
    # and only on this machine: an open dashboard can revoke tasks and shut workers down.
    address = "127.0.0.1"
    _logging.getLogger("jenga.flower").warning(
        "Flower is running WITHOUT authentication, on 127.0.0.1 only:"
        " set FLOWER_BASIC_AUTH=user:password"
    )
