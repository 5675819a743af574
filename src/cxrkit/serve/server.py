"""uvicorn settings for the service, shared by ``cxr serve``, the tests and bench/serve_load.py.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a request head
that never finishes: a client that opens a connection and sends half a request line would hold
it forever. :class:`HeadTimeoutH11` closes such a connection after ``HEAD_TIMEOUT_S``; the
body has its own deadline in :func:`cxrkit.serve.upload.read_upload` (408). Heads are capped
at 16 KB (h11's incomplete-event limit) and connections at ``max_connections`` (uvicorn answers
503 above it), so stalled clients cannot exhaust the server.

A head over the cap is answered 431 (a malformed one 400), as JSON like every other error.
Closing a socket that still has unread request bytes makes the kernel send a reset, and the
client loses the answer (a 413 for a 100 MB upload, a 431 for a 200 kB cookie): connections
are therefore closed "lingering" (:class:`_LingeringTransport`): the server stops writing,
drops what still arrives for up to ``LINGER_S`` and only then closes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 64
LINGER_S = 2.0


class _LingeringTransport:
    """A transport whose ``close`` half-closes, drops input for ``LINGER_S``, then closes."""

    def __init__(self, transport, loop):
        self._transport, self._loop, self.lingering = transport, loop, False

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        self.lingering = True
        try:
            self._transport.resume_reading()  # keep draining even if flow control paused reading
            self._transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self._transport.close()
            return
        self._loop.call_later(LINGER_S, self._transport.close)

    def abort(self) -> None:
        self._transport.abort()


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request head is late."""

    head_timeout_s = HEAD_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(_LingeringTransport(transport, self.loop))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:  # answered and closing: what still arrives is dropped
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self.transport.lingering:
            self.transport._transport.close()
            return
        super().eof_received()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a head h11 refused: 431 when it is over the cap, else 400; JSON."""
        too_long = len(self.conn.trailing_data[0]) > MAX_HEAD_BYTES
        status = 431 if too_long else 400
        detail = (
            f"request head (request line and headers) is larger than {MAX_HEAD_BYTES // 1024} KB; "
            "send smaller headers (cookies)"
            if too_long
            else "malformed HTTP request head"
        )
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # h11 cannot answer in this state: just close
            pass
        self.transport.close()

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


class PortInUseError(OSError):
    """The address cannot be bound (the message names it and the fix)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` before anything says "serving": a busy port is one line,
    not a "serving at ..." followed by uvicorn's own error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); is another server running there? "
            "Choose another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


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

    sock = bind_socket("127.0.0.1", 0)
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
