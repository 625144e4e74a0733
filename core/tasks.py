"""Stopping a background task for certain.

``task.cancel()`` asks once, and a coroutine deep in a library can swallow the
``CancelledError`` and carry on. Seen here with redis-py 5.0.1 on Python 3.11: the
process-lease task (``dispatch.presence.sockets``) was cancelled during a renewal, was
left "cancelling" but back in its loop, renewing, and the ``await`` of it in ``stop()``
never returned (CI hung). ``cancel_and_wait`` asks again until the task has ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

# How long a cancel gets to end the task before it is asked again.
RETRY_S = 0.05


async def cancel_and_wait(
    task: asyncio.Task[Any], *, suppress: tuple[type[BaseException], ...] = ()
) -> None:
    """Cancel ``task`` and return once it has ended, cancelling it again every
    ``RETRY_S`` while it runs on. Its cancellation, and an exception it ended with that is
    one of ``suppress``, are not raised here; any other exception it ended with is."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RETRY_S)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, suppress):
        raise exc
