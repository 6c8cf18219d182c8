"""The gateway's keep-alive connections to a deployment: a connection the server dropped while
it sat idle is replaced, not reported as the deployment's failure."""

from __future__ import annotations

import asyncio

import pytest

from local.http_pool import HttpPool, UpstreamError

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


async def _server(requests_per_connection: int) -> tuple[asyncio.Server, list[int]]:
    """Answers ``requests_per_connection`` requests on a connection, then drops it when the
    next one arrives, without a byte (a keep-alive timeout racing the request). Records how
    many requests each connection answered."""
    answered: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if count == requests_per_connection:
                break
            writer.write(ANSWER)
            await writer.drain()
            count += 1
        answered.append(count)
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), answered


def test_a_connection_dropped_while_idle_is_replaced() -> None:
    async def scenario() -> list[int]:
        server, answered = await _server(requests_per_connection=1)
        pool = HttpPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        statuses = [(await pool.post("/score", b"{}", {}, 5))[0] for _ in range(4)]
        pool.close()
        server.close()
        return statuses + answered

    outcome = asyncio.run(scenario())
    assert outcome[:4] == [200, 200, 200, 200]  # every request answered, none failed
    assert outcome[4:7] == [1, 1, 1]  # each dropped connection answered one request


def test_a_new_connection_that_fails_is_the_servers_failure() -> None:
    async def scenario() -> None:
        server, _ = await _server(requests_per_connection=0)  # drops every request
        pool = HttpPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            await pool.post("/score", b"{}", {}, 5)
        finally:
            server.close()

    with pytest.raises(UpstreamError):
        asyncio.run(scenario())
