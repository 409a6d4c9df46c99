"""The HTTP door: the gRPC API as HTTP/JSON, on CONVEYOR_HTTP_LISTEN.

Routes are the ``google.api.http`` annotations of the protos (conveyor.transcode), each
calling what the gRPC call calls (gateway.calls). Errors are ``google.rpc.Status`` JSON
with the gRPC code's HTTP status. Served by Starlette on uvicorn inside the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import socket
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.routing import Route as StarletteRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor import jsonlike, tracing, transcode
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.authenticate import Authenticator
from conveyor.auth.principal import METADATA_AUTHORIZATION, METADATA_NAMESPACE, Principal, bound
from conveyor.auth.roles import method_path
from conveyor.errors import ConveyorError, FieldViolation, InvalidArgument, Unauthenticated
from conveyor.server import internal_error, status_for
from conveyor.tls import CertificateFiles
from conveyor.transcode import Route
from gateway.calls import Call, CallFailed
from gateway.sse import EventStream, TaskStreams

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # code.proto says 400; 412 tells a client that retrying the same request is pointless
    # until the resource changes, which is what FAILED_PRECONDITION means here.
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_CUSTOM_INPUT = tasks_pb2.CustomTaskInput.DESCRIPTOR.full_name
_WKT = "google.protobuf."
DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Conveyor HTTP API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""
"""Swagger UI over /openapi.json, its files served by the gateway (no CDN at run time)."""
SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"
"""Swagger UI's files, vendored at a pinned version (static/swagger-ui/README.md)."""
CONSOLE = Path(__file__).parent / "static" / "console"
"""The web console: a page and its modules, calling only the routes below (docs/console.md)."""
WATCHES = frozenset({"WatchTask", "WatchTasks"})
"""The streaming methods served over HTTP, as Server-Sent Events (gateway.sse)."""
ALL_VERBS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def error_response(status: status_pb2.Status, http_status: int | None = None) -> Response:
    """``status`` as google.rpc.Status JSON, with its code's HTTP status unless given."""
    if http_status is None:
        http_status = HTTP_STATUS.get(_CODES.get(status.code, grpc.StatusCode.UNKNOWN), 500)
    return JSONResponse(transcode.to_json(status), http_status)


def _problem(code: grpc.StatusCode, message: str, http_status: int, field: str = "") -> Response:
    status = status_pb2.Status(code=code.value[0], message=message)
    if field:
        status = status_for(InvalidArgument.for_fields([FieldViolation(field, message)]))
    return error_response(status, http_status)


@dataclass(frozen=True)
class HttpOptions:
    """How the door behaves: the body limit and the origins allowed by CORS."""

    max_body_bytes: int = 16 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()


def brief_submit(body: Any, task_fields: frozenset[str]) -> Any:
    """The quick-start's ``{"task_type": ..., "payload": {...}}`` as a SubmitTaskRequest's
    JSON: the payload is the built-in type's input, or a custom type's arguments, passed on
    as JSON text so that its integers keep every digit."""
    if not isinstance(body, dict) or "task_type" not in body:
        return body
    rest = dict(body)
    task_type, payload = rest.pop("task_type"), rest.pop("payload", {})
    if not isinstance(task_type, str):
        raise InvalidArgument.for_fields([FieldViolation("task_type", "must be a string")])
    if task_type in task_fields:
        rest[task_type] = payload
    else:
        rest["custom"] = {"type": task_type, "json": _custom_json(payload)}
    return rest


def exact_custom_payloads(body: Any, message: Descriptor, at: str = "") -> None:
    """Passes each custom input's ``payload`` object in a request's JSON on as ``json`` text,
    in place: parsed into a Struct, its integers past 2**53 would be rounded to doubles. Only
    the request's own message fields are walked, so the depth is the schema's."""
    if not isinstance(body, dict):
        return
    for field in message.fields:
        kind = field.message_type
        if kind is None or kind.GetOptions().map_entry or kind.full_name.startswith(_WKT):
            continue
        value = body.get(field.json_name, body.get(field.name))
        path = at + field.name
        if kind.full_name == _CUSTOM_INPUT:
            if isinstance(value, dict) and "json" not in value and "payload" in value:
                value["json"] = _custom_json(value.pop("payload"), f"{path}.payload")
        elif field.is_repeated:
            for i, item in enumerate(value if isinstance(value, list) else []):
                exact_custom_payloads(item, kind, f"{path}[{i}].")
        else:
            exact_custom_payloads(value, kind, f"{path}.")


def _custom_json(payload: Any, field: str = "payload") -> str:
    if not isinstance(payload, dict):
        raise InvalidArgument.for_fields([FieldViolation(field, "must be a JSON object")])
    try:
        return jsonlike.dumps(payload)
    except jsonlike.NotJsonLike as exc:
        violation = FieldViolation(exc.field(field), exc.reason)
        raise InvalidArgument.for_fields([violation]) from exc


class Door:
    """The routes and what answers them."""

    def __init__(
        self,
        services: list[ServiceDescriptor],
        calls: Mapping[str, Call],
        options: HttpOptions,
        ready: Callable[[], bool],
        streams: TaskStreams | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.routes = transcode.routes(services)
        self._authenticator = authenticator or Authenticator()
        self.aliases = _aliases(self.routes)
        self._calls = calls
        self._options = options
        self._ready = ready
        self._streams = streams
        submit = next(r.method for r in self.routes if r.method.name == "SubmitTask")
        oneof = submit.input_type.oneofs_by_name["input"]
        self._task_fields = frozenset(f.name for f in oneof.fields if f.name != "custom")

    def app(self) -> ASGIApp:
        """The ASGI application: Starlette's, and the event streams beside it (gateway.sse):
        ``GET`` on a path ending ``:watch`` goes through the same dispatch, CORS, and error
        answers, but not through Starlette's middleware, whose wrappers would otherwise be
        run on each event of each stream."""
        middleware = []
        if self._options.cors_origins:
            middleware.append(Middleware(CORSMiddleware, **self._cors()))
        routes: list[BaseRoute] = [
            StarletteRoute("/healthz", self._healthz, methods=["GET"]),
            StarletteRoute("/readyz", self._readyz, methods=["GET"]),
            StarletteRoute("/openapi.json", self._openapi, methods=["GET"]),
            StarletteRoute("/docs", self._docs, methods=["GET"]),
            Mount("/docs/static", StaticFiles(directory=SWAGGER_UI)),
            StarletteRoute("/", self._console, methods=["GET"]),
            Mount("/console", StaticFiles(directory=CONSOLE)),
            StarletteRoute("/{path:path}", self._dispatch, methods=ALL_VERBS),
        ]
        starlette = Starlette(routes=routes, middleware=middleware)
        streams: ASGIApp = self._stream
        if self._options.cors_origins:
            streams = CORSMiddleware(streams, **self._cors())
        return _Streams(streams, starlette)

    def _cors(self) -> dict[str, Any]:
        return {
            "allow_origins": list(self._options.cors_origins),
            "allow_methods": ALL_VERBS,
            "allow_headers": ["Content-Type", "Last-Event-ID", "Authorization", METADATA_NAMESPACE],
        }

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._dispatch(Request(scope, receive))
        await response(scope, receive, send)

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "SERVING"})

    async def _readyz(self, request: Request) -> Response:
        if self._ready():
            return JSONResponse({"status": "SERVING"})
        return JSONResponse({"status": "NOT_SERVING"}, 503)

    async def _openapi(self, request: Request) -> Response:
        document = resources.files("conveyor.api").joinpath("openapi.json").read_bytes()
        return Response(document, media_type="application/json")

    async def _docs(self, request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    async def _console(self, request: Request) -> Response:
        return console_page()

    def _find(self, verb: str, path: str) -> tuple[Route, dict[str, str]] | Response:
        allowed: set[str] = set()
        for route in (*self.routes, *self.aliases):
            variables = route.match(path)
            if variables is None:
                continue
            if route.verb == verb or (verb == "HEAD" and route.verb == "GET"):
                return route, variables
            allowed.add(route.verb)
        if allowed:
            message = f"{verb} is not allowed on {path}; use {', '.join(sorted(allowed))}"
            response = _problem(grpc.StatusCode.UNIMPLEMENTED, message, 405)
            response.headers["Allow"] = ", ".join(sorted(allowed))
            return response
        return _problem(grpc.StatusCode.NOT_FOUND, f"no route {verb} {path}", 404)

    async def _dispatch(self, request: Request) -> Response | EventStream:
        found = self._find(request.method, request.url.path)
        if isinstance(found, Response):
            return found
        route, variables = found
        method = route.method
        try:
            principal = await self._authenticator.principal(
                request.headers.get(METADATA_AUTHORIZATION),
                request.headers.get(METADATA_NAMESPACE),
                method_path(method.containing_service.full_name, method.name),
            )
        except ConveyorError as exc:
            return refusal(exc)
        with bound(principal):
            return await self._answer(request, route, variables, principal)

    async def _answer(
        self, request: Request, route: Route, variables: dict[str, str], principal: Principal
    ) -> Response | EventStream:
        """The route's call, made as ``principal``."""
        body: Any = None
        if route.body:
            body = await self._read_json(request)
            if isinstance(body, Response):
                return body
        query = {key: request.query_params.getlist(key) for key in request.query_params}
        try:
            if route in self.aliases and route.method.name == "SubmitTask":
                body = brief_submit(body, self._task_fields)
            if route.body == "*":
                exact_custom_payloads(body, route.method.input_type)
            request_message = transcode.build_request(route, variables, query, body)
            if route.method.server_streaming:
                if self._streams is None or route.method.name not in WATCHES:
                    why = f"{route.method.name} is not served over HTTP"
                    return _problem(grpc.StatusCode.UNIMPLEMENTED, why, 501)
                return await self._streams.respond(request_message, request, principal)
            full_method = f"/{route.method.containing_service.full_name}/{route.method.name}"
            with tracing.http_server_call(full_method, request.headers):
                response = await self._calls[route.method.full_name](request_message)
        except ConveyorError as exc:
            return error_response(status_for(exc))
        except CallFailed as failed:
            return error_response(failed.status)
        except Exception as exc:
            # Logged once here; the client gets a Status like any other, not an HTML page.
            return error_response(status_for(internal_error(route.method.full_name, exc)))
        return JSONResponse(transcode.to_json(response))

    async def _read_json(self, request: Request) -> Any:
        """The body as JSON (an empty body is ``{}``), or the error response to send."""
        limit = self._options.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data.strip():
            return {}
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            message = f"Content-Type must be application/json, not {kind or 'missing'}"
            return _problem(grpc.StatusCode.INVALID_ARGUMENT, message, 415)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            message = f"the body is not valid JSON: {exc}"
            return _problem(grpc.StatusCode.INVALID_ARGUMENT, message, 400, field="body")


def console_page() -> Response:
    """The console's page, with a policy that lets it run only its own files and its one
    inline script (the import map), so injected markup cannot run code."""
    page = (CONSOLE / "index.html").read_text()
    start = page.index('<script type="importmap">') + len('<script type="importmap">')
    digest = hashlib.sha256(page[start : page.index("</script>", start)].encode()).digest()
    policy = (
        f"default-src 'self'; script-src 'self' 'sha256-{base64.b64encode(digest).decode()}'; "
        "img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-cache",  # an upgraded gateway's page, not a cached old one
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(page, headers=headers)


def refusal(error: ConveyorError) -> Response:
    """The answer to a call refused at the door: 401 asks for bearer credentials (RFC 6750)."""
    response = error_response(status_for(error))
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="conveyor"'
    return response


def _too_large(limit: int) -> Response:
    message = f"the body is larger than {limit} bytes"
    return _problem(grpc.StatusCode.RESOURCE_EXHAUSTED, message, 413)


def _aliases(routes: list[Route]) -> list[Route]:
    """The quick-start's routes, ``/tasks/`` and ``/tasks/{id}``, as the /v1 ones'."""
    by_template = {(r.verb, r.template): r for r in routes}
    wanted = [
        (("POST", "/v1/tasks"), ["/tasks/", "/tasks"]),
        (("GET", "/v1/tasks"), ["/tasks/", "/tasks"]),
        (("GET", "/v1/tasks/{task_id}"), ["/tasks/{task_id}"]),
    ]
    aliases: list[Route] = []
    for key, templates in wanted:
        target = by_template[key]
        for template in templates:
            pattern = transcode.compile_template(template)
            aliases.append(Route(target.method, target.verb, template, target.body, pattern))
    return aliases


class _Streams:
    """Sends ``GET`` requests for event streams (paths ending ``:watch``) to ``streams``,
    everything else to ``rest``."""

    def __init__(self, streams: ASGIApp, rest: ASGIApp) -> None:
        self._streams = streams
        self._rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].endswith(":watch")
        ):
            await self._streams(scope, receive, send)
        else:
            await self._rest(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the gateway's own handle SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """The door served on ``listen`` (host:port; port 0 picks one)."""

    def __init__(self, app: ASGIApp, listen: str, tls: CertificateFiles | None = None) -> None:
        host, _, port = listen.rpartition(":")
        self._socket = socket.create_server((host.strip("[]"), int(port)), reuse_port=False)
        self._socket.setblocking(False)
        # Our context rather than uvicorn's files: it follows a rotated certificate.
        factory = None if tls is None else (lambda config, default: tls.ssl_context(["http/1.1"]))
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # httptools (a pinned dependency): "auto" would fall back to the pure-Python
            # h11 without a word, which spends more per request and per streamed event.
            http="httptools",
            ssl_context_factory=factory,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        """Serves in the background once listening."""
        self._task = asyncio.create_task(self._server.serve([self._socket]), name="http")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def stop(self, grace: float) -> None:
        """Stops accepting, gives open requests ``grace`` seconds, then closes the rest."""
        if self._task is None:
            return
        self._server.config.timeout_graceful_shutdown = max(math.ceil(grace), 1)
        self._server.should_exit = True
        await self._task
        self._socket.close()
