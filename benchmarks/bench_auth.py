"""CPU cost of the gateway's per-call check, in process: CONVEYOR_AUTH=off against keys.

    python -m benchmarks.bench_auth [--calls 200000] [--rounds 3]

Times ``Authenticator.principal`` for a SubmitTask call: with authentication off (the
namespace check and the role table lookup only) and with an API key (plus the key ring's
dictionary lookup, one SHA-256 and a constant-time comparison). The key ring is filled
directly, as its bucket watch would fill it, so no NATS is involved: what a call costs
once the key is known, which is every call but a key's first on a gateway. End to end,
``AUTH=keys scripts/bench --scenario submit-latency`` against ``scripts/bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from conveyor.api.auth.v1 import auth_pb2
from conveyor.api.events.v1 import keys_pb2
from conveyor.auth.authenticate import Authenticator
from conveyor.auth.keyring import KeyRing
from conveyor.auth.keys import new_key

METHOD = "/conveyor.api.tasks.v1.TaskService/SubmitTask"


async def per_call(authenticator: Authenticator, header: str, calls: int) -> float:
    """Microseconds per check."""
    started = time.perf_counter()
    for _ in range(calls):
        await authenticator.principal(header, None, METHOD)
    return (time.perf_counter() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    ring = KeyRing(kv=None)  # type: ignore[arg-type]  # never read: every lookup hits
    key = new_key()
    info = auth_pb2.ApiKey(key_id=key.key_id, namespace="default", role="ROLE_SUBMITTER")
    stored = keys_pb2.StoredKey(key=info, secret_sha256=key.secret_sha256)
    await ring._changed(key.key_id, stored.SerializeToString())
    off, keys = Authenticator(), Authenticator(ring)
    header = f"Bearer {key}"
    print(f"{'round':>5}  {'off (us/call)':>14}  {'keys (us/call)':>14}")
    for number in range(1, rounds + 1):
        print(
            f"{number:>5}  {await per_call(off, header, calls):>14.2f}  "
            f"{await per_call(keys, header, calls):>14.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.rounds))
