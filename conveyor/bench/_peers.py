"""``conveyor bench --peers DIR``: the peer task systems and the bare gRPC floor, measured
by the peers harness in DIR on this machine, in the same run as Conveyor's scenarios.

The harness is not part of Conveyor: DIR holds its ``run_all.sh`` (which starts its own
Redis and nats-server on loopback and runs each peer's benchmark in DIR's ``.venv``, made
once by its ``setup.sh``) and ``grpc_floor.py`` (a bare grpc.aio call, run with this
Python). Each peer script prints its rows as JSON lines, which ``run_all.sh`` keeps in
``DIR/.logs/<stamp>/run<k>/<peer>.stdout``: those are what is read back here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from conveyor.bench._display import Display
from conveyor.bench._results import Floor, PeerRow, PeerRun
from conveyor.bench._tracking import BenchError

CELERY_STATEFUL = "celery_redis_stateful"
TASKIQ_STATEFUL = "taskiq_nats_stateful"
TASKIQ_BATCH = "taskiq_nats_batch256"
DEFAULT_PEERS = (CELERY_STATEFUL, TASKIQ_STATEFUL, TASKIQ_BATCH)
"""The peers the ratios of issue 20 compare with; ``PEERS`` in the environment overrides."""
HARNESS = "run_all.sh"
FLOOR = "grpc_floor.py"
_MAX_TEXT = 1 << 20
"""The most output of the harness kept (its table); the rest is in its own logs."""

_SEQUENTIAL = re.compile(
    r"sequential: p50 (?P<p50>[\d.]+) ms\s+p99 (?P<p99>[\d.]+) ms\s+rate (?P<rate>[\d.]+)/s"
)
_IN_FLIGHT = re.compile(r"(?P<n>\d+) in flight: (?P<rate>[\d.]+) calls/s")


def parse_floor(text: str) -> Floor:
    """The figures ``grpc_floor.py`` printed; raises BenchError when they are not there."""
    sequential = _SEQUENTIAL.search(text)
    in_flight = _IN_FLIGHT.search(text)
    if sequential is None or in_flight is None:
        raise BenchError(f"{FLOOR} printed no figures: {text.strip()[-300:]!r}")
    return Floor(
        p50=float(sequential["p50"]),
        p99=float(sequential["p99"]),
        rate=float(sequential["rate"]),
        in_flight=int(in_flight["n"]),
        in_flight_rate=float(in_flight["rate"]),
    )


def read_rows(run_dir: Path) -> list[PeerRow]:
    """The rows every peer script of one harness run printed (JSON lines on stdout)."""
    rows: list[PeerRow] = []
    for out in sorted(run_dir.glob("*.stdout")):
        for line in out.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                rows.append(PeerRow.of(out.name.removesuffix(".stdout"), data))
    return rows


def check_directory(directory: str) -> list[str]:
    """What keeps ``directory`` from being a peers harness, if anything."""
    path = Path(directory)
    missing = [name for name in (HARNESS, FLOOR) if not (path / name).is_file()]
    if missing:
        return [f"--peers {directory}: no {' or '.join(missing)} there (the peers harness)"]
    return []


async def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Runs a harness program; its stderr (progress) goes to ours, its stdout is returned."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return await process.wait(), out[-_MAX_TEXT:].decode(errors="replace")


def _stamps(logs: Path) -> set[str]:
    return {p.name for p in logs.iterdir() if p.is_dir()} if logs.is_dir() else set()


async def run_peers(directory: str, display: Display) -> PeerRun:
    """Runs the harness once (``RUNS=1``) and the gRPC floor, and reads what they measured.

    Raises BenchError when the harness is not set up or fails as a whole; a single peer
    that fails is listed in ``missing``.
    """
    path = Path(directory).resolve()
    problems = check_directory(str(path))
    if problems:
        raise BenchError(problems[0])
    if not (path / ".venv" / "bin" / "python").exists():
        raise BenchError(f"the peers harness in {path} is not set up: run {path}/setup.sh once")
    env = {**os.environ, "RUNS": "1"}
    env.setdefault("PEERS", " ".join(DEFAULT_PEERS))
    run = PeerRun(str(path))
    phase = display.phase(f"peers: {path}/{HARNESS} ({env['PEERS']}), minutes")
    before = _stamps(path / ".logs")
    code, table = await _run(["bash", str(path / HARNESS)], path, env)
    phase.done()
    new = sorted(_stamps(path / ".logs") - before)
    if code != 0 or not new:
        raise BenchError(f"{path}/{HARNESS} failed (exit {code}): {table.strip()[-300:]!r}")
    log_dir = path / ".logs" / new[-1]
    run.log_dir = str(log_dir)
    run.rows = read_rows(log_dir / "run1")
    run.missing = [p for p in env["PEERS"].split() if not any(r.peer == p for r in run.rows)]
    phase = display.phase(f"peers: {FLOOR} (bare grpc.aio calls)")
    code, text = await _run([sys.executable, str(path / FLOOR)], path, dict(os.environ))
    phase.done()
    try:
        run.floor = parse_floor(text)
    except BenchError as exc:
        run.notes.append(f"{FLOOR} exited {code}: {exc.message}")
    return run
