"""benchmarks.profile_breakdown: py-spy's raw stacks, counted by part of a submit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.profile_breakdown import breakdown, read

LOOP = "run (conveyor/server.py:1);Runner.run (asyncio/runners.py:118)"
HANDLER = f"{LOOP};ServerTracingInterceptor.wrap.<locals>.unary (conveyor/tracing.py:9)"
# A raw profile as py-spy writes it: one stack a line, root first, then its sample count.
PROFILE = f"""\
{LOOP};uv_run (loop.c:1);uv__io_poll (loop.c:2);epoll_pwait (libc.so.6) 40
{LOOP};0x7f00 (grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so);sendmsg (libc.so.6) 30
{LOOP};Client._flusher (nats/aio/client.py:1);TcpTransport.writelines (nats/aio/transport.py:2);\
StreamWriter.writelines (asyncio/streams.py:346);UVStream__exec_write (loop.c:3);\
writev (libc.so.6) 20
{HANDLER};GatewayService.SubmitTask (gateway/service.py:40);validate_submit \
(conveyor/intake/validation.py:109);upb_strtable_lookup2 (_message.abi3.so) 6
{HANDLER};GatewayService.SubmitTask (gateway/service.py:40);validate_submit \
(conveyor/intake/validation.py:109) 3
{HANDLER} 1
not a stack line
"""


def test_busy_samples_go_to_the_innermost_part_of_a_submit(tmp_path: Path) -> None:
    path = tmp_path / "gateway.txt"
    path.write_text(PROFILE)
    total, busy, parts = breakdown(read(path))
    assert (total, busy) == (100, 60)  # the 40 samples waiting in epoll are left out
    assert parts == {
        "gRPC: Cython layer and C core": 30,
        "NATS socket writes (nats-py flusher task)": 20,
        "protobuf (upb): parse, build, serialise": 6,
        "validation": 3,
        "tracing (OpenTelemetry)": 1,
    }


def test_the_command_prints_each_part_in_ms_per_call(tmp_path: Path) -> None:
    path = tmp_path / "gateway.txt"
    path.write_text(PROFILE)
    argv = [sys.executable, "-m", "benchmarks.profile_breakdown", str(path)]
    out = subprocess.run(
        [*argv, "--cpu-per-call-ms", "1.2"], capture_output=True, text=True, check=True
    ).stdout
    assert "100 samples, 60 busy; 1.2 ms of CPU per call" in out
    assert "| gRPC: Cython layer and C core | 50.0% | 0.600 |" in out
    assert "| validation | 5.0% | 0.060 |" in out


WORKER = "thread (7): MainThread;run (conveyor/server.py:1);Runner.run (asyncio/runners.py:118)"
WORKER_PROFILE = f"""\
{WORKER};uv_run (loop.c:1);epoll_pwait (libc.so.6) 50
{WORKER};Client._flusher (nats/aio/client.py:1);writev (libc.so.6) 30
{WORKER};TypeConsumer._run (worker/consumer.py:366);Runner.handle (worker/runner.py:89);\
Client.publish (nats/aio/client.py:2) 15
{WORKER};TypeConsumer._run (worker/consumer.py:366);current_task (asyncio/tasks.py:38);\
getpid (libc.so.6) 4
thread (8): Thread-1 (_connection_worker_thread);_queue_SimpleQueue_get (_queuemodule.c:1);\
PyThread_acquire_lock_timed (libpython3.11.so.1.0);0x7f00 (libc.so.6) 25
thread (9): pool_0;Thread.run (threading.py:1);sqlite3_step (libsqlite3.so.0) 6
"""


def test_a_role_counts_each_sample_by_what_the_process_was_doing(tmp_path: Path) -> None:
    """With --role the first of the role's parts found anywhere in the stack decides (the
    publish inside a task's run counts as the run); threads blocked on a lock or queue
    are idle; --thread keeps one thread's samples."""
    path = tmp_path / "worker.txt"
    path.write_text(WORKER_PROFILE)
    total, busy, parts = breakdown(read(path), role="worker")
    assert (total, busy) == (130, 55)
    assert parts == {
        "getpid (asyncio.get_running_loop's fork check)": 4,
        "NATS socket writes (nats-py flusher task)": 30,
        "a task's run: decode, middleware, handler, outcome event, ack": 15,
        "other (event loop, interpreter)": 6,
    }
    total, busy, parts = breakdown(read(path), role="worker", thread="MainThread")
    assert (total, busy) == (99, 49)
    argv = [sys.executable, "-m", "benchmarks.profile_breakdown", str(path), "--role", "worker"]
    out = subprocess.run([*argv, "--cpu-per-call-ms", "0.2"], capture_output=True, text=True)
    assert "| NATS socket writes (nats-py flusher task) | 54.5% | 0.109 |" in out.stdout
