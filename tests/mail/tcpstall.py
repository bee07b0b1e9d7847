"""A loopback TCP proxy that can silently stop forwarding: a half-open connection on demand.

``stall()`` freezes every connection open at that moment: bytes are still read from both
sides (so nobody sees a closed socket or a full buffer) but dropped, exactly like a NAT
entry that timed out. Connections accepted afterwards forward normally, so a client that
notices and reconnects recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class _Link:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    frozen: bool = False


class StallingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._links: list[_Link] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def accepted(self) -> int:
        """How many client connections the proxy has accepted so far."""
        return len(self._links)

    def stall(self) -> None:
        for link in self._links:
            link.frozen = True

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writers=[writer])
        self._links.append(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        link.writers.append(up_writer)
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not link.frozen:
                    writer.write(data)
                    await writer.drain()
        if not link.frozen:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            for task in link.tasks:
                task.cancel()
            for writer in link.writers:
                writer.transport.abort()
        for link in self._links:
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def stalling_proxy(target_host: str, target_port: int) -> AsyncIterator[StallingProxy]:
    proxy = StallingProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
