"""uvicorn settings for the service, shared by ``cxr serve``, the tests and bench/serve_load.py.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a request head
that never finishes: a client that opens a connection and sends half a request line would hold
it forever. :class:`HeadTimeoutH11` closes such a connection after ``HEAD_TIMEOUT_S``; the
body has its own deadline in :func:`cxrkit.serve.upload.read_upload` (408). Heads are capped
at 16 KB (h11's incomplete-event limit) and connections at ``max_connections`` (uvicorn answers
503 above it), so stalled clients cannot exhaust the server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 64


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request head is late."""

    head_timeout_s = HEAD_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def _arm(self) -> None:
        self.loop.call_later(self.head_timeout_s, self._head_late, self.cycle)

    def _head_late(self, cycle) -> None:
        """Close when no new request started since arming and none is being answered."""
        idle = self.cycle is cycle and (cycle is None or cycle.response_complete)
        if idle and not self.transport.is_closing():
            self.transport.close()


def server_config(
    app,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    max_connections: int = MAX_CONNECTIONS,
    **extra,
) -> Config:
    """A uvicorn Config with the timeouts and caps above."""
    return Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=HeadTimeoutH11,
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=max_connections,
        **extra,
    )


@contextlib.contextmanager
def running(app, **settings):
    """Serve ``app`` as ``cxr serve`` would, in a thread on a free 127.0.0.1 port; yield its base URL.

    For tests and benchmarks; ``settings`` go to :func:`server_config`.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, lifespan="off", **settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
