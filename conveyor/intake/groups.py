"""Group commit of concurrent submits.

A lone submit publishes its ``submitted`` event and its task together, at once (after the
submits already runnable, which join it). Submits that arrive while that exchange with
JetStream is in flight wait for it and then go out together in one exchange: their events
as one ``TaskEvents`` message per task type (one stored message and one acknowledgement
for all of them, and one message for the store to read), their tasks as the messages they
always are. An idle gateway adds no wait, and a busy one writes and reads fewer, larger
messages. Each caller is answered with the outcome of its own messages: stored, or the
error of the one that was not.
"""

from __future__ import annotations

import asyncio

from conveyor import messages
from conveyor.api.events.v1 import events_pb2
from conveyor.publish import AckedPublisher

_Waiting = tuple[events_pb2.TaskEvent, messages.Message, "asyncio.Future[None]"]


class SubmitGroups:
    """Publishes submits, one exchange with JetStream in flight at a time."""

    def __init__(self, publisher: AckedPublisher, source: str) -> None:
        self._publisher = publisher
        self._source = source  # the role whose subjects the events go on
        self._waiting: list[_Waiting] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None

    def max_bytes(self) -> int:
        """The bytes of events one message may carry: half what the server takes, at most."""
        return min(self._publisher.max_payload // 2, messages.MAX_BATCH_BYTES)

    async def publish(self, submitted: events_pb2.TaskEvent, queued: messages.Message) -> None:
        """Publishes a task's ``submitted`` event and its message; returns once both are
        stored, or raises what JetStream answered (or the timeout)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (submitted, queued, future)
        self._waiting.append(entry)
        if self._busy:
            await future
            return
        self._busy = True
        try:
            # Submits already runnable go first: arriving together, they queue behind this
            # one, and it takes them along rather than going alone.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:  # the caller went away: its task is not sent
                self._waiting = [w for w in self._waiting if w is not entry]
                raise
            group, self._waiting = self._waiting, []
            if len(group) > 1:
                await self._commit(group)
                await future
                return
            event = messages.submitted_message(self._source, submitted)
            await self._publisher.publish_all([event, queued])
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """After an exchange: the submits that queued meanwhile go out next, in a task of
        their own (the caller that ran the exchange is answered now)."""
        if self._waiting:
            self._drainer = asyncio.ensure_future(self._drain())  # kept: a task is weakly held
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._commit(group)
        finally:
            self._busy = False
            for *_, future in self._waiting:  # only when cancelled (the gateway stops)
                if not future.done():
                    future.set_exception(ConnectionError("the gateway is stopping"))
            self._waiting = []

    async def _commit(self, group: list[_Waiting]) -> None:
        events = [submitted for submitted, _, _ in group]
        batches = messages.submitted_batches(self._source, events, self.max_bytes())
        outgoing = [message for message, _ in batches] + [queued for _, queued, _ in group]
        errors: list[BaseException | None] = [None] * len(group)
        try:
            results = await self._publisher.publish_each(outgoing)
        except asyncio.CancelledError:
            _answer(group, [ConnectionError("the gateway is stopping")] * len(group))
            raise
        except Exception as exc:  # the connection failed: every caller is told
            _answer(group, [exc] * len(group))
            return
        for (_, indices), result in zip(batches, results, strict=False):
            if result is not None:
                for index in indices:
                    errors[index] = result
        for index, result in enumerate(results[len(batches) :]):
            if result is not None and errors[index] is None:
                errors[index] = result
        _answer(group, errors)


def _answer(group: list[_Waiting], errors: list[BaseException | None]) -> None:
    for (_, _, future), error in zip(group, errors, strict=True):
        if future.done():  # the caller went away (its deadline passed)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
