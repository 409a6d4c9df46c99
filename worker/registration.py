"""Registering the types a worker serves: through the store, which checks them and writes
the types bucket (the worker's NATS credentials cannot write it, store.registrar)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2

log = logging.getLogger(__name__)

REGISTER_TIMEOUT = 5.0
RETRY_EVERY = 0.25
WAIT_LOG_EVERY = 10.0


class RegistrationRefused(ValueError):
    """Raised when the store refuses a type's registration (its spec breaks the rules)."""


async def register_once(nc: NATS, spec: events_pb2.TaskTypeSpec) -> None:
    """Asks a store to register ``spec``; raises NoRespondersError or TimeoutError when no
    store answers, RegistrationRefused when it refuses."""
    reply = await nc.request(
        subjects.REGISTER_SUBJECT, spec.SerializeToString(), timeout=REGISTER_TIMEOUT
    )
    refused = subjects.REGISTER_REFUSED
    if reply.data.startswith(refused):
        raise RegistrationRefused(reply.data[len(refused) :].decode(errors="replace"))


async def register(nc: NATS, specs: Iterable[events_pb2.TaskTypeSpec]) -> bool:
    """Registers every spec while a store answers at once; False if none did (then
    :func:`register_until_done` goes on)."""
    for spec in specs:
        try:
            await register_once(nc, spec)
        except RegistrationRefused as exc:
            log.error("the store refused task type %s: %s", spec.type, exc)
        except (NoRespondersError, TimeoutError):
            return False
    return True


async def register_until_done(nc: NATS, specs: Iterable[events_pb2.TaskTypeSpec]) -> None:
    """Registers every spec, waiting (and saying so) until a store answers."""
    logged = 0.0
    for spec in specs:
        while True:
            try:
                await register_once(nc, spec)
                break
            except RegistrationRefused as exc:
                log.error("the store refused task type %s: %s", spec.type, exc)
                break
            except (NoRespondersError, TimeoutError) as exc:
                now = asyncio.get_running_loop().time()
                if now - logged >= WAIT_LOG_EVERY:
                    log.info("waiting for a store to register task types (%r)", exc)
                    logged = now
                await asyncio.sleep(RETRY_EVERY)
