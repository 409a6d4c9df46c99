"""Progress reports closer together than the interval are coalesced to the latest one,
which is never lost: it is sent when the interval ends or before the outcome."""

from __future__ import annotations

import asyncio

from worker.progress import ProgressThrottle


class Sink:
    """Records what is sent; ``gate`` holds a send until it is set."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.sending = asyncio.Event()

    async def send(self, current: int, total: int, message: str) -> None:
        self.sending.set()
        await self.gate.wait()
        self.sent.append(current)


async def test_the_first_report_goes_at_once_and_the_latest_before_the_outcome() -> None:
    sink = Sink()
    throttle = ProgressThrottle(sink.send, interval=60.0)
    for current in range(1, 1001):
        await throttle.report(current, 1000, "")
    assert sink.sent == [1]
    await throttle.flush()
    assert sink.sent == [1, 1000]


async def test_a_report_made_while_the_held_one_is_sent_is_not_lost() -> None:
    sink = Sink()
    throttle = ProgressThrottle(sink.send, interval=0.01)
    await throttle.report(1, 3, "")
    sink.gate.clear()
    sink.sending.clear()
    await throttle.report(2, 3, "")  # held, sent by the timer, which then waits on the gate
    await asyncio.wait_for(sink.sending.wait(), 10)
    await throttle.report(3, 3, "")  # made while 2 is being sent
    sink.gate.set()
    await throttle.flush()
    assert sink.sent == [1, 2, 3]


async def test_an_interval_of_zero_sends_every_report() -> None:
    sink = Sink()
    throttle = ProgressThrottle(sink.send, interval=0.0)
    for current in range(5):
        await throttle.report(current, 5, "")
    await throttle.flush()
    assert sink.sent == [0, 1, 2, 3, 4]
