"""Keep-alive HTTP/1.1 connections from the gateway to one deployment's server.

The gateway's hop to a deployment is on every request's path, so it is kept to what the
gateway needs: POST a body with a few headers, read the status and a Content-Length (or
chunked) body. A general client (aiohttp) spent more CPU per request on this hop than the
model does on one row. Connections are reused while the server keeps them open; one that
timed out or broke mid-answer is closed, never handed to the next request.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class UpstreamError(Exception):
    """The deployment's server is unreachable or broke the connection mid-answer."""


class _StaleConnection(Exception):  # noqa: N818 - control flow inside the pool, never escapes
    """The connection closed before any byte of the answer came back."""


class HttpPool:
    def __init__(self, url: str, max_idle: int = 64) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"a deployment URL must be http://host:port, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.base_path = parts.path.rstrip("/")
        self.max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(
        self, path: str, body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> tuple[int, bytes]:
        """Status and body; ``TimeoutError`` after ``timeout_seconds``, ``UpstreamError``
        when the server cannot be reached or answers nothing readable.

        A kept-alive connection the server closed or reset while it sat idle (its keep-alive
        timeout, a restart) fails before any byte of an answer comes back: the request is
        sent once more on a new connection (scoring changes nothing, so a request the server
        did see may be sent again). A failure on a new connection is the server's."""
        async with asyncio.timeout(timeout_seconds):
            while True:
                reader, writer, reused = await self._connection()
                try:
                    return await self._exchange(reader, writer, path, body, headers)
                except _StaleConnection as stale:
                    if not reused:
                        raise UpstreamError(str(stale)) from stale

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, bytes]:
        reusable = False
        try:
            writer.write(self._request(path, body, headers))
            try:
                first = await reader.readexactly(1)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                raise _StaleConnection(str(error) or type(error).__name__) from error
            status, content, reusable = await _read_response(reader, first)
            return status, content
        except (TimeoutError, _StaleConnection):
            raise  # TimeoutError is an OSError too, but the caller answers it as a timeout
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as error:
            raise UpstreamError(str(error) or type(error).__name__) from error
        finally:
            if reusable and len(self._idle) < self.max_idle:
                self._idle.append((reader, writer))
            else:
                writer.close()

    def _request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            f"POST {self.base_path}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """(reader, writer, whether it is a kept-alive one)."""
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {error}") from error
        return reader, writer, False

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _read_response(reader: asyncio.StreamReader, first: bytes) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may carry another request); ``first`` is the
    answer's first byte, read already."""
    head = first + await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status = status_line.split(" ", 2)[:2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        content = await _read_chunked(reader)
    elif "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    else:  # the body runs to the end of the connection
        return int(status), await reader.read(), False
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return int(status), content, keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent by the servers used here
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
