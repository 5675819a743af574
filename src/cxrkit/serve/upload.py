"""Read one uploaded file from a multipart/form-data request, in memory, with a size limit.

Starlette's own form parser spools files over 1 MB to a temporary file on disk; medical
images must not land on the server's disk, so the body is streamed through
python-multipart's low-level parser here and only the ``file`` field is kept, in memory.
The limit is enforced before reading: a Content-Length over it gets 413 at once (the body is
never read, so a client sees the answer instead of a reset after tens of MB); a body without
one is counted while it streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import PureWindowsPath

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .responses import HttpError

FIELD = "file"
# Room for the multipart boundaries and part headers around the file itself.
FORM_OVERHEAD = 64 * 1024
# A streamed (chunked) body found oversized is read and dropped up to this many times the limit
# before the answer, so clients that send everything before reading see the 413, not a reset.
DRAIN_FACTOR = 4
# RFC 2046 allows 1-70 characters; python-multipart raises on more than 256 (it was a 500).
MAX_BOUNDARY = 70


async def read_upload(request: Request, max_bytes: int, timeout_s: float = 30.0) -> tuple[str, bytes]:
    """(file name, content) of the form's ``file`` field; :class:`HttpError` otherwise.

    The whole body must arrive within ``timeout_s``: a client that stalls (or declared a
    Content-Length larger than what it sends) gets 408 and the connection is closed, so stalled
    uploads cannot pile up.
    """
    ctype, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise HttpError(
            415,
            f"send the image as multipart/form-data in a field named {FIELD!r} "
            f"(got content type {ctype.decode('latin-1') or 'none'})",
        )
    if len(boundary) > MAX_BOUNDARY:
        raise HttpError(
            400, f"multipart boundary is {len(boundary)} characters; RFC 2046 allows at most {MAX_BOUNDARY}"
        )
    too_big = HttpError(413, f"upload is larger than the {_mb(max_bytes)} limit", close=True)
    body_limit = max_bytes + FORM_OVERHEAD
    chunks = _body(request, timeout_s)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:  # refused unread, before any 100-continue
        raise too_big

    form = _FileField(max_bytes)
    parser = MultipartParser(boundary, form.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > body_limit or form.size > max_bytes:
                await _drain(chunks, body_limit * DRAIN_FACTOR - received)
                raise too_big
            parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, FormParserError) as exc:
        raise HttpError(400, f"malformed multipart body ({exc})") from None
    if form.size > max_bytes:
        raise too_big
    if form.data is None:
        raise HttpError(422, f"no file in the form: send the image in a field named {FIELD!r}")
    return form.filename, bytes(form.data)


async def _body(request: Request, timeout_s: float) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, all within ``timeout_s`` (see :func:`read_upload`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise HttpError(
                408,
                f"the request body did not arrive within {timeout_s:g} s (is its "
                "Content-Length larger than the body?); connection closed",
                close=True,
            ) from None
        if message["type"] == "http.disconnect":
            raise HttpError(400, "the client closed the connection before the whole body arrived", close=True)
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body", False):
            return


async def _drain(chunks: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop the rest of the body, up to ``budget`` bytes."""
    async for chunk in chunks:
        budget -= len(chunk)
        if budget < 0:
            return


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


class _FileField:
    """python-multipart callbacks that keep the bytes of the ``file`` part and nothing else."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.filename = "upload"
        self.data: bytearray | None = None
        self.size = 0
        self._header_name = b""
        self._header_value = b""
        self._is_file = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._is_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            _, params = parse_options_header(self._header_value)
            if params.get(b"name") == FIELD.encode() and self.data is None:
                self._is_file = True
                self.data = bytearray()
                # a base name only: the client's folders are none of our business
                name = PureWindowsPath(params.get(b"filename", b"").decode("utf-8", "replace")).name
                self.filename = name or "upload"
        self._header_name = self._header_value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size <= self.max_bytes:
                self.data += data[start:end]
