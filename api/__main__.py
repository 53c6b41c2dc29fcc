"""``python -m api``: the ``web`` process. Config is loaded and checked before
uvicorn binds or anything connects."""

from __future__ import annotations

import uvicorn

from common.config import get_settings
from common.support.logs import configure_logging


def main() -> None:
    settings = get_settings()  # exits with one clear message on bad config
    configure_logging(settings.log_format, settings.log_level)
    from api.app import create_app

    uvicorn.run(
        create_app(settings),
        host="0.0.0.0",
        port=settings.port,
        log_config=None,  # keep our handler: same format, secrets scrubbed
        access_log=False,
        # SIGTERM: stop accepting, let requests in flight finish for up to the grace.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


if __name__ == "__main__":
    main()
