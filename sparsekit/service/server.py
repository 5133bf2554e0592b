"""Run the build service's HTTP server until a signal stops it.

SIGTERM, SIGINT and SIGHUP all shut down the same way: stop accepting, give open requests
``SHUTDOWN_GRACE_S`` seconds (stalled uploads are cut then), stop the running builds (their
jobs are queued again for the next start) and release the state folder.
"""

from __future__ import annotations

import logging
import signal

import uvicorn

from sparsekit.service.api import create_app
from sparsekit.service.connections import guarded_protocol
from sparsekit.service.settings import ServiceSettings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10
KEEP_ALIVE_S = 5


def serve(settings: ServiceSettings, on_ready=lambda: None) -> None:
    """Serve the API on ``settings.host:settings.port`` (blocks until shut down).

    Args:
        settings: checked service settings.
        on_ready: called once the state folder is recovered and the app is built, before binding.

    Raises:
        ServiceStateError: the state folder is held by another server or cannot be opened.
    """
    app = create_app(settings)
    on_ready()
    protocol = guarded_protocol(settings.header_timeout_s, settings.max_connections_per_ip)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S, timeout_keep_alive=KEEP_ALIVE_S,
        http=protocol,  # no limit_concurrency: a server-wide cap would let one flooding client starve /healthz
    )
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: server.handle_exit(signal.SIGTERM, frame))  # a closed terminal stops it cleanly too
    try:
        server.run()
    finally:
        signal.signal(signal.SIGHUP, previous)
