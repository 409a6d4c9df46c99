"""Whether the EVENTS stream is still the history the store's cursor was applied from.

The cursor is a stream sequence. If the stream is deleted and made again under a kept
database (its JetStream state lost, or removed by an operator), its sequences start again
at 1, and every event up to the old cursor would be skipped as applied: new tasks would
never show, nor the reconciler's verdicts on the tasks lost with the old stream. A stream
restored from an older backup goes back in the same way, part of the way.

So the cursor keeps the stream's time of the last event applied, and whenever the store
declares its consumer (at start, and after a pull request failed, as it does when the
consumer went with its stream) it looks at the stream. It is the same history if its last
sequence is not below the cursor and the message at the cursor's sequence, while the
stream still holds it, has the recorded time. Otherwise the cursor moves to just before
the first message newer than the last event applied, found by bisection over the stream's
times: a restored backup's old messages are older than it, a new stream's all newer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from conveyor import subjects
from store.repository import TaskRepository

TimeFrom = Callable[[int], Awaitable[int | None]]
"""The time (µs) of the first message at or after a sequence; None when there is none."""


def time_us(moment: dt.datetime) -> int:
    """Microseconds since the epoch of a stream message's time (nats-py keeps six of the
    nine digits JetStream gives, as ``ns // 1000`` of a reply subject's time does)."""
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


async def first_newer(time_from: TimeFrom, first: int, last: int, after_us: int | None) -> int:
    """The lowest sequence in [first, last + 1] from which every message is newer than
    ``after_us`` (all of them when it is None), given that times grow with sequences."""
    low, high = max(first, 1), last + 1
    if after_us is None:
        return low
    while low < high:
        middle = (low + high) // 2
        found = await time_from(middle)
        if found is None or found > after_us:
            high = middle
        else:
            low = middle + 1
    return low


async def follow(js: JetStreamContext, repository: TaskRepository) -> str | None:
    """Moves the cursor to the stream's new history if it has one, and says what was done;
    None when the stream is the same."""
    seen = await repository.cursor()
    sequence, time_us = seen
    if sequence == 0:
        return None
    state = (await js.stream_info(subjects.STREAM_EVENTS)).state
    if state.last_seq >= sequence:
        if time_us is None or sequence < state.first_seq:
            return None  # nothing left to compare with: taken as the same
        at = await time_at(js, sequence)
        if at is None or at == time_us:
            return None  # the same message, or none left there to compare with
    start = await first_newer(lambda s: time_from(js, s), state.first_seq, state.last_seq, time_us)
    dropped = await repository.rebase(seen, start - 1)
    if dropped is None:
        return "the store's cursor was moved meanwhile (by another store replica)"
    return (
        f"the {subjects.STREAM_EVENTS} stream is not the one the store applied up to "
        f"sequence {sequence} (it now ends at {state.last_seq}): it was made again or "
        f"restored. Events from sequence {start} on are applied as new; {dropped} events "
        "parked for tasks of the old stream were dropped"
    )


async def time_from(js: JetStreamContext, sequence: int) -> int | None:
    """The time (µs) of the first EVENTS message at or after ``sequence``; None if none."""
    return await _time(js, sequence, at_or_after=True)


async def time_at(js: JetStreamContext, sequence: int) -> int | None:
    """The time (µs) of the EVENTS message at ``sequence``; None if there is none."""
    return await _time(js, sequence, at_or_after=False)


async def _time(js: JetStreamContext, sequence: int, *, at_or_after: bool) -> int | None:
    """The time of the message at ``sequence`` (or the first after it); None if none."""
    try:
        if at_or_after:
            subject = f"{subjects.EVENTS_PREFIX}.>"
            msg = await js.get_msg(subjects.STREAM_EVENTS, sequence, subject=subject, next=True)
        else:
            msg = await js.get_msg(subjects.STREAM_EVENTS, sequence)
    except NotFoundError:
        return None
    return time_us(msg.time) if msg.time else None
