"""Byte copying for CONNECT tunnels and forwarded requests, with byte counts, an idle
timeout and a total time limit shared by both directions of one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

CHUNK_SIZE = 256 * 1024


class TransferMonitor:
    """Counters and limits of one proxied connection.

    `bytes_out` counts bytes from the client to the upstream, `bytes_in` bytes from
    the upstream to the client. Times are in seconds on the event loop's clock.
    """

    def __init__(self, *, idle_timeout: float, max_duration: float) -> None:
        loop = asyncio.get_running_loop()
        self.idle_timeout = idle_timeout
        self.started = loop.time()
        self.deadline = self.started + max_duration
        self.last_activity = self.started
        self.bytes_out = 0
        self.bytes_in = 0
        self.reset = False

    def touch(self) -> None:
        self.last_activity = asyncio.get_running_loop().time()

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.started

    async def copy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, outbound: bool
    ) -> None:
        """Copy bytes until end of stream, then half-close the writer."""
        while True:
            try:
                data = await reader.read(CHUNK_SIZE)
            except ConnectionResetError:
                # Clients often end TLS with a reset rather than a FIN. A reset ends this
                # direction like end of stream, and the outcome becomes "reset".
                self.reset = True
                data = b""
            if not data:
                break
            self.touch()
            if outbound:
                self.bytes_out += len(data)
            else:
                self.bytes_in += len(data)
            writer.write(data)
            await writer.drain()
            self.touch()
        if writer.can_write_eof() and not writer.is_closing():
            try:
                writer.write_eof()
            except OSError:
                pass

    async def supervise(
        self, *coroutines: Coroutine[Any, Any, None], ends_with_first: bool = False
    ) -> str:
        """Run the copies until all finish, one fails, or a time limit passes.

        With `ends_with_first`, the transfer also ends when the first coroutine finishes.

        Returns why the transfer ended: "closed", "reset" (a side reset its connection),
        "idle timeout", "time limit", or "error: ..." naming the first failed copy's error.
        """
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
        pending: set[asyncio.Task[None]] = set(tasks)
        outcome = "closed"
        try:
            while pending:
                now = loop.time()
                idle_deadline = self.last_activity + self.idle_timeout
                if now >= self.deadline:
                    outcome = "time limit"
                    break
                if now >= idle_deadline:
                    outcome = "idle timeout"
                    break
                done, pending = await asyncio.wait(
                    pending,
                    timeout=min(idle_deadline, self.deadline) - now,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                failure = next((t.exception() for t in done if t.exception() is not None), None)
                if failure is not None:
                    outcome = f"error: {type(failure).__name__}: {failure}"
                    break
                if ends_with_first and tasks[0] in done:
                    break
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if outcome == "closed" and self.reset:
            outcome = "reset"
        return outcome
