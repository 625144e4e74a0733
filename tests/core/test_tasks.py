"""core.tasks.cancel_and_wait: a task that swallows a cancellation is still stopped."""

from __future__ import annotations

import asyncio

import pytest

from core.tasks import cancel_and_wait


async def test_a_task_that_swallows_the_first_cancel_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0
    started = asyncio.Event()

    async def stubborn() -> None:
        nonlocal swallowed
        started.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 2:
                    raise
                swallowed += 1  # as a library that turns it into "no data" would

    task = asyncio.create_task(stubborn())
    await started.wait()
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()
    assert swallowed == 2


async def test_a_plain_task_is_cancelled_at_once() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_what_the_task_ended_with_is_raised_unless_suppressed() -> None:
    async def fails_on_cancel(exc: BaseException) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise exc from None

    task = asyncio.create_task(fails_on_cancel(OSError("socket gone")))
    await asyncio.sleep(0)
    await cancel_and_wait(task, suppress=(OSError,))  # suppressed

    task = asyncio.create_task(fails_on_cancel(ValueError("a bug")))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="a bug"):
        await cancel_and_wait(task, suppress=(OSError,))


async def test_a_task_already_done_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)
    assert not task.cancelled()
