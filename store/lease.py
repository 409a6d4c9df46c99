"""The writer lease: of the store replicas sharing a database, the one holding it applies
events; the others stand by (store.roles).

The lease is one key of a NATS KV bucket, which every deployment has (SQLite, with its one
store, included), changed only by compare-and-set on its revision:

- the holder renews it every ``seconds / RENEWALS`` by writing it again at the revision
  it last wrote; a write that finds another revision means it was taken over;
- a standby that sees the same revision for ``seconds`` (by its own clock, from when it
  first saw it) takes it, at that revision, with a new epoch: one standby wins;
- the holder stops counting itself the holder ``HOLDER_SHARE`` of ``seconds`` after the
  last renewal it sent, before any standby can have taken over.

Clocks are never compared between processes, but a process paused past its lease (GC,
SIGSTOP, a frozen VM) wakes believing what it believed: so the epoch is also a fencing
token in the database (TaskRepository.claim_writer), which refuses the batches of every
epoch but the newest claimed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

LEASE_KEY = "writer"
RENEWALS = 4
"""Renewals per lease period: three may fail (NATS slow, a leader election) before the
holder steps down."""
HOLDER_SHARE = 0.75
"""Share of the period after its last renewal that the holder still counts itself the
holder; standbys wait the whole period, from a later moment (when they saw the renewal)."""
LOOKS = 10
"""Looks at the lease per period by a standby: it notices a free lease this soon."""
MAX_VALUE_BYTES = 1024


@dataclass(frozen=True)
class Lease:
    """A value of the lease key: who holds it ("" when released) and its epoch."""

    holder: str
    epoch: int

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "epoch": self.epoch}).encode()

    @staticmethod
    def decode(data: bytes | None) -> Lease:
        """The lease in ``data``; anything else reads as a released lease of epoch 0 (the
        bucket is the store's alone, but a damaged value must not stop every replica)."""
        try:
            if data is None or len(data) > MAX_VALUE_BYTES:
                raise ValueError("missing or too long")
            value = json.loads(data)
            holder, epoch = value["holder"], value["epoch"]
            if not isinstance(holder, str) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError("wrong types")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("the writer lease holds an unreadable value (%s): taken as free", exc)
            return Lease("", 0)
        return Lease(holder, epoch)


class WriterLease:
    """This replica's side of the lease: :meth:`tick` every :attr:`interval` seconds."""

    def __init__(
        self,
        kv: KeyValue,
        holder: str,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kv = kv
        self.holder = holder
        self.seconds = seconds
        self._clock = clock
        self.epoch = 0
        """The epoch of the lease this replica holds or last held (its fencing token)."""
        self._revision: int | None = None  # of the holder's last write, while holding
        self._renewed = -float("inf")  # when that write was sent
        self._seen: tuple[int, float] | None = None  # another's revision, and since when

    @property
    def interval(self) -> float:
        """Seconds between two ticks: a renewal while held, a look while standing by."""
        return self.seconds / (RENEWALS if self.held else LOOKS)

    @property
    def held(self) -> bool:
        """Whether this replica holds the lease, by its own clock."""
        return (
            self._revision is not None
            and self._clock() - self._renewed < self.seconds * HOLDER_SHARE
        )

    async def tick(self, floor: int = 0) -> bool:
        """Renews the lease if held, else takes it if free or expired with an epoch above
        ``floor`` (the database's) and the lease's own; whether it is held now."""
        if self._revision is not None:
            return await self._renew()
        return await self._take(floor)

    async def _renew(self) -> bool:
        assert self._revision is not None
        sent = self._clock()
        try:
            self._revision = await self._kv.update(
                LEASE_KEY, Lease(self.holder, self.epoch).encode(), last=self._revision
            )
        except KeyWrongLastSequenceError:
            log.warning("the writer lease (epoch %d) was taken over", self.epoch)
            self._revision = None
            return False
        except Exception as exc:  # NATS away or slow: held until its time runs out
            if not self.held:
                log.warning("the writer lease could not be renewed in time: %r", exc)
                self._revision = None
            return self.held
        self._renewed = sent
        return True

    async def _take(self, floor: int) -> bool:
        now = self._clock()
        try:
            entry = await self._kv.get(LEASE_KEY)
        except KeyNotFoundError:  # never written, or deleted
            entry = None
        except Exception as exc:
            log.warning("reading the writer lease failed: %r", exc)
            return False
        current = Lease.decode(entry.value) if entry is not None else Lease("", 0)
        revision = entry.revision if entry is not None and entry.revision else 0
        if current.holder and current.holder != self.holder:
            if self._seen is None or self._seen[0] != revision:
                self._seen = (revision, now)  # renewed since the last look
                return False
            if now - self._seen[1] < self.seconds:
                return False
            log.warning(
                "the writer lease of %s (epoch %d) was not renewed for %.1fs: taking over",
                current.holder,
                current.epoch,
                now - self._seen[1],
            )
        lease = Lease(self.holder, max(current.epoch, floor) + 1)
        try:
            if entry is None:
                written = await self._kv.create(LEASE_KEY, lease.encode())
            else:
                written = await self._kv.update(LEASE_KEY, lease.encode(), last=revision)
        except KeyWrongLastSequenceError:
            return False  # another replica took it first
        except Exception as exc:
            log.warning("taking the writer lease failed: %r", exc)
            return False
        self._revision, self._renewed, self.epoch = written, now, lease.epoch
        self._seen = None
        return True

    def drop(self) -> None:
        """Stops counting itself the holder (the database refused its epoch)."""
        self._revision = None

    async def release(self) -> None:
        """Hands the lease back on a clean stop, so a standby takes it at its next look
        instead of after a whole period."""
        if self._revision is None:
            return
        revision, self._revision = self._revision, None
        try:
            await self._kv.update(LEASE_KEY, Lease("", self.epoch).encode(), last=revision)
        except Exception as exc:  # taken over already, or NATS away: it expires instead
            log.warning("releasing the writer lease failed: %r", exc)
