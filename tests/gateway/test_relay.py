"""The gateway relays TaskService's reads and control to the store as bytes: real gRPC
servers on loopback, a scripted store behind a gateway's TaskService, clients in front.
WatchTask is not relayed but multiplexed (tests/gateway/test_watch.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from conveyor import tracing
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.client import AsyncClient
from conveyor.config import Limits
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.intake.submit import Submitter
from conveyor.metrics import GatewayMetrics, ServiceMetrics
from conveyor.server import Server
from gateway.relay import STORE_CALL_TIMEOUT
from gateway.service import TASK_SERVICE, GatewayService, add_task_service

MAX_BYTES = 4 * 1024 * 1024
NOT_RELAYED = {"SubmitTask", "SubmitTasks", "WatchTask"}
RELAYED = [m.name for m in TASK_SERVICE.methods if m.name not in NOT_RELAYED]

# Two serialized messages concatenated: a valid GetTaskResponse (the parser merges them)
# whose bytes any parse and re-serialization would change.
GET_BYTES = (
    tasks_pb2.GetTaskResponse(
        task=tasks_pb2.Task(id="t1", type="text_processing")
    ).SerializeToString()
    + tasks_pb2.GetTaskResponse(task=tasks_pb2.Task(attempt=2)).SerializeToString()
)
VIOLATION = FieldViolation("page_token", "not a token of this listing")


@dataclass
class Seen:
    """One call the store received."""

    method: str
    request: bytes
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class FakeStore:
    """A store serving TaskService with scripted raw answers, recording each call; built
    on conveyor's Server, so its errors become statuses exactly as the real store's do."""

    server: Server
    seen: list[Seen] = field(default_factory=list)


def _store_handlers(store: FakeStore) -> dict[str, grpc.RpcMethodHandler]:
    def record(method: str, request: bytes, context: Any) -> None:
        metadata = {key: value for key, value in context.invocation_metadata()}
        store.seen.append(Seen(method, request, metadata, context.time_remaining()))

    def unary(method: str, answer: Callable[[], bytes]) -> grpc.RpcMethodHandler:
        async def handle(request: bytes, context: Any) -> bytes:
            record(method, request, context)
            return answer()

        return grpc.unary_unary_rpc_method_handler(handle)

    def refuse_list() -> bytes:
        raise InvalidArgument("bad listing", [VIOLATION])

    handlers = {name: unary(name, lambda: b"") for name in RELAYED}
    handlers["GetTask"] = unary("GetTask", lambda: GET_BYTES)
    handlers["ListTasks"] = unary("ListTasks", refuse_list)
    return handlers


@pytest.fixture
async def store() -> AsyncIterator[FakeStore]:
    fake = FakeStore(
        Server("127.0.0.1:0", [TASK_SERVICE.full_name], MAX_BYTES, ServiceMetrics("s"))
    )
    generic = grpc.method_handlers_generic_handler(TASK_SERVICE.full_name, _store_handlers(fake))
    fake.server.grpc.add_generic_rpc_handlers((generic,))
    await fake.server.start()
    yield fake
    await fake.server.stop(0.1)


@dataclass
class RelayGateway:
    """A gateway server with TaskService (no NATS: the submits are not called here)."""

    server: Server
    metrics: GatewayMetrics
    channel: grpc.aio.Channel

    def calls(self, method: str, code: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "conveyor_grpc_requests_total",
            {"method": f"{TASK_SERVICE.full_name}/{method}", "code": code},
        )
        return value or 0.0


@pytest.fixture
async def gateway(store: FakeStore) -> AsyncIterator[RelayGateway]:
    metrics = GatewayMetrics()
    server = Server("127.0.0.1:0", [TASK_SERVICE.full_name], MAX_BYTES, metrics)
    to_store = grpc.aio.insecure_channel(store.server.address)
    add_task_service(server.grpc, GatewayService(cast(Submitter, None), Limits()), to_store)
    await server.start()
    yield RelayGateway(server, metrics, to_store)
    await server.stop(0.1)
    await to_store.close()


@pytest.fixture
async def raw(gateway: RelayGateway) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the gateway, its calls sending and receiving bytes."""
    async with grpc.aio.insecure_channel(gateway.server.address) as channel:
        yield channel


def _path(method: str) -> str:
    return f"/{TASK_SERVICE.full_name}/{method}"


async def test_responses_arrive_as_the_store_serialized_them(
    store: FakeStore, raw: grpc.aio.Channel
) -> None:
    assert tasks_pb2.GetTaskResponse.FromString(GET_BYTES).SerializeToString() != GET_BYTES
    request = tasks_pb2.GetTaskRequest(task_id="t1").SerializeToString()
    got = await raw.unary_unary(_path("GetTask"))(request, timeout=5)
    assert got == GET_BYTES
    assert store.seen[0].request == request  # the client's request bytes, forwarded


async def test_typed_clients_read_the_relayed_messages(
    store: FakeStore, gateway: RelayGateway
) -> None:
    async with AsyncClient(gateway.server.address, timeout=5) as client:
        task = await client.get("t1")
    assert (task.id, task.type, task.attempt) == ("t1", "text_processing", 2)


async def test_the_stores_status_and_details_reach_the_client(
    store: FakeStore, gateway: RelayGateway
) -> None:
    async with AsyncClient(gateway.server.address, timeout=5) as client:
        with pytest.raises(InvalidArgument) as refused:
            await client.list(page_token="nonsense")
    assert refused.value.message == "bad listing"
    assert refused.value.violations == [VIOLATION]
    # Counted by the gateway's metrics interceptor with the status the client saw.
    assert gateway.calls("ListTasks", "INVALID_ARGUMENT") == 1


async def test_every_relayed_call_carries_the_trace_and_a_deadline(
    store: FakeStore, raw: grpc.aio.Channel
) -> None:
    caller = TracerProvider().get_tracer("caller")
    with caller.start_as_current_span("client") as span:
        metadata = tuple(tracing.inject().items())
    for method in RELAYED:
        refused = method == "ListTasks"  # the scripted store refuses every listing
        with pytest.raises(grpc.aio.AioRpcError) if refused else contextlib.nullcontext():
            await raw.unary_unary(_path(method))(b"", metadata=metadata, timeout=5)
    assert [s.method for s in store.seen] == RELAYED
    trace_id = format(span.get_span_context().trace_id, "032x")
    for seen in store.seen:
        assert seen.metadata["traceparent"].split("-")[1] == trace_id, seen.method
        # The caller's deadline, passed on (gRPC rounds a deadline up on the wire).
        assert seen.time_remaining is not None
        assert 0 < seen.time_remaining < 5 + 1


async def test_the_callers_deadline_reaches_the_store_else_the_gateways_bound(
    store: FakeStore, raw: grpc.aio.Channel
) -> None:
    get = raw.unary_unary(_path("GetTask"))
    await get(b"", timeout=60)  # longer than the gateway's own bound: the caller decides
    await get(b"")  # no deadline: the gateway's bound
    long, unbounded = (seen.time_remaining for seen in store.seen)
    assert long is not None and STORE_CALL_TIMEOUT + 1 < long <= 60 + 1
    assert unbounded is not None and 0 < unbounded <= STORE_CALL_TIMEOUT + 1


async def test_an_undecodable_request_is_refused_before_the_store(
    store: FakeStore, raw: grpc.aio.Channel
) -> None:
    for call in (
        raw.unary_unary(_path("GetTask")),
        raw.unary_stream(_path("WatchTask")),
        raw.unary_stream(_path("WatchTasks")),
    ):
        # WatchTask's and WatchTasks' handlers are their own, refusing the same way.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _finish(call(b"\xff\xff\xff", timeout=5))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid message" in (refused.value.details() or "")
    assert store.seen == []


async def test_a_store_that_is_down_is_reported_unavailable(
    store: FakeStore, raw: grpc.aio.Channel
) -> None:
    await store.server.stop(0)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await raw.unary_unary(_path("GetTask"))(b"", timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (failed.value.details() or "").startswith("store unavailable: ")


async def _finish(call: Any) -> None:
    """Awaits a unary call, or reads a streaming one to its end."""
    if hasattr(call, "__aiter__"):
        [_ async for _ in call]
    else:
        await call
