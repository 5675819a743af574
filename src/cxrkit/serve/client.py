"""A stdlib client for the service (scripts, tests, bench/serve_load.py): no extra dependency.

``upload(url + "/v1/predict", png_bytes, "scan.png").json()`` posts one file the way the web
page does (multipart field ``file``) and returns a :class:`Reply` for any status, 4xx and 5xx
included, so callers can count them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

from .upload import FIELD


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str:
        """A header the service percent-encodes (class names), decoded."""
        return unquote({k.lower(): v for k, v in self.headers.items()}[name.lower()])


def request(url: str, data=None, headers: dict | None = None, method: str | None = None, timeout: float = 60) -> Reply:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return Reply(res.status, dict(res.headers), res.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


def multipart(content: bytes, filename: str = "x.png", field: str = FIELD) -> tuple[bytes, dict]:
    """A multipart/form-data body with one file field, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(url: str, content: bytes, filename: str = "x.png", field: str = FIELD, timeout: float = 60) -> Reply:
    body, headers = multipart(content, filename, field)
    return request(url, body, headers, timeout=timeout)
