"""How the tasks of a replica's session end, and which ending means what.

The task running ``Follower.run`` must only ever be cancelled to stop it: it stays connected
until cancelled, and a cancellation meant for something else ends replication for good, with
the node alive and nothing logged. So the reading runs in a task of the session's own, which a
failed apply loop may cancel; and thread work cancelled with its session finishes first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from litecluster.errors import ReplicaError

T = TypeVar("T")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ApplyFailed(ReplicaError):
    """An apply loop failed (disk full, I/O error): the session ends and the replica retries."""

    def __init__(self, message: str, *, cause: BaseException | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.cause: BaseException = cause if cause is not None else self


def session_error(exc: BaseException) -> BaseException:
    """What an apply loop's failure ends the session with."""
    # Its acks written after the connection dropped fail too: that is the lost connection.
    return exc if isinstance(exc, ConnectionError) else ApplyFailed(first_line(exc), cause=exc)


async def read_in_own_task(
    receive: Callable[[Callable[[asyncio.Task[None]], None]], Coroutine[Any, Any, None]],
) -> None:
    """Run ``receive(failed)`` in a new task; ``failed`` is the done callback for apply loops.

    An apply loop's failure cancels the reading (which may be waiting on that loop's full
    queue) and is raised here. It cancelled the task running ``run`` before: a loop failing as
    the connection dropped did so after the session had ended, and the follower stopped."""
    failures: list[BaseException] = []
    reading: asyncio.Task[None] | None = None

    def failed(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and (exc := t.exception()) is not None and reading is not None:
            failures.append(exc)
            reading.cancel()  # a no-op once the reading is over

    reading = asyncio.create_task(receive(failed))
    try:
        await reading
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # a stop (or a role change)
        if not failures:  # a bug; as a cancellation it would end the follower silently
            raise RuntimeError("the replication reader was cancelled") from None
    if failures:
        raise session_error(failures[0])


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """``asyncio.to_thread``, except that a cancellation returns only once the thread is done.

    A cancelled ``to_thread`` leaves its thread running: an apply batch abandoned when a session
    ended kept writing to the replica while the next session, started from the position before
    it, applied to the same file (records that no longer followed asked for a snapshot), and a
    node that stopped closed the replica under it."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):  # the task still counts it
                await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the caller is gone, and its interest in the result
        raise
