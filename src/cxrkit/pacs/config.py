"""Where the PACS is and how to log in: a DICOMweb client whose secrets never reach argv or logs.

Credentials come from the environment (``CXR_PACS_TOKEN`` for a bearer token, or
``CXR_PACS_USER`` + ``CXR_PACS_PASSWORD`` for HTTP basic) or from a file given by path
(``--credentials FILE``: JSON ``{"token": ...}`` or ``{"username": ..., "password": ...}``).
They are set on the ``requests`` session (``session.auth``), not as request headers, because
dicomweb-client logs request headers at debug level. TLS certificates are verified unless
``verify=False`` is asked for explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import CxrkitError, UsageError

TOKEN_ENV, USER_ENV, PASSWORD_ENV = "CXR_PACS_TOKEN", "CXR_PACS_USER", "CXR_PACS_PASSWORD"
T = TypeVar("T")


class PacsError(CxrkitError, RuntimeError):
    """The PACS could not be reached or refused a request; ``transient`` when a retry may help."""

    def __init__(self, message: str, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class PacsConfig:
    """A DICOMweb endpoint (``.../dicom-web``), its login, and how patient to be with it.

    ``attempts`` requests (default 4) with ``backoff`` * 2^k seconds between them (1, 2, 4 s)
    ride out a PACS restart of a few seconds; ``timeout`` bounds each request.
    """

    url: str
    credentials: Path | None = None
    verify: bool | str = True  # False, or a CA bundle path
    timeout: float = 30.0
    attempts: int = 4
    backoff: float = 1.0

    def __post_init__(self):
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url {self.url!r}: expected http(s)://HOST[:PORT]/PATH of the DICOMweb root")
        if parts.username or parts.password:
            raise UsageError(
                "--url must not contain a user or password (command lines end up in shell history "
                f"and process lists); set {USER_ENV}/{PASSWORD_ENV} or use --credentials FILE"
            )
        if self.attempts < 1 or self.timeout <= 0 or self.backoff < 0:
            raise UsageError("attempts must be >= 1, timeout > 0 and backoff >= 0")

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def auth(self):
        """``requests`` auth object from the file or the environment, or None."""
        values = (
            _read_credentials(self.credentials)
            if self.credentials
            else {
                "token": os.environ.get(TOKEN_ENV),
                "username": os.environ.get(USER_ENV),
                "password": os.environ.get(PASSWORD_ENV),
            }
        )
        if values.get("token"):
            return _Bearer(values["token"])
        if values.get("username"):
            if values.get("password") is None:
                raise UsageError(f"a PACS user is set but no password ({PASSWORD_ENV} or 'password' in the file)")
            return (values["username"], values["password"])
        return None

    def connect(self) -> "Connection":
        """A ``dicomweb_client.DICOMwebClient`` on an authenticated session (its own retries off:
        :func:`with_retries` retries connection errors too, which it does not)."""
        import requests
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        session.auth = self.auth()
        session.verify = self.verify
        client = DICOMwebClient(self.base, session=session, timeout=self.timeout)
        client.set_http_retry_params(retry=False)
        logging.getLogger("retrying").setLevel(logging.ERROR)  # it logs each failed try with a traceback
        return Connection(self, client, session)


@dataclass
class Connection:
    """An open DICOMweb client and its session; :meth:`call` runs one request with retries."""

    cfg: PacsConfig
    client: object
    session: object
    sleep: Callable[[float], None] = time.sleep

    def call(self, what: str, fn: Callable[[], T]) -> T:
        return with_retries(what, fn, self.cfg.attempts, self.cfg.backoff, self.sleep)


class _Bearer:
    """``Authorization: Bearer TOKEN`` on every request of the session (a requests AuthBase)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:  # never print the token
        return "Bearer(***)"


def _read_credentials(path: Path) -> dict:
    try:
        mode = path.stat().st_mode
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--credentials {path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"--credentials {path}: not readable JSON ({type(exc).__name__}); expected "
            '{"token": "..."} or {"username": "...", "password": "..."}'
        ) from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise UsageError(f"--credentials {path}: readable by other users; run `chmod 600 {path}`")
    if not isinstance(values, dict) or not (values.get("token") or values.get("username")):
        raise UsageError(f'--credentials {path}: expected {{"token": ...}} or {{"username": ..., "password": ...}}')
    return values


TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def with_retries(
    what: str, fn: Callable[[], T], attempts: int, backoff: float, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``fn()``, retried on connection errors, timeouts and HTTP 408/429/5xx with exponential
    back-off; any failure comes out as a :class:`PacsError` that says what was being done."""
    import requests

    for attempt in range(attempts):
        try:
            return fn()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            error = PacsError(f"{what}: PACS answered HTTP {status}", status, status in TRANSIENT_STATUS)
        except requests.Timeout:
            error = PacsError(f"{what}: PACS did not answer in time", transient=True)
        except requests.ConnectionError:
            error = PacsError(f"{what}: PACS unreachable (connection failed)", transient=True)
        if not error.transient or attempt == attempts - 1:
            if error.transient and attempts > 1:
                error.args = (f"{error} after {attempts} attempts",)
            raise error from None
        sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")
