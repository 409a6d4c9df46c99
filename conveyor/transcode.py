"""HTTP/JSON transcoding from the ``google.api.http`` annotations of the protos.

One generic mapping: every route comes from a method's annotation, read from the
descriptors at start-up, so the REST surface cannot drift from the gRPC contract. Bodies
and answers are protobuf's canonical JSON (``google.protobuf.json_format``). The gateway
serves the routes (gateway.http); the OpenAPI document and docs/http.md are made from them
too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from conveyor import protojson
from conveyor.errors import FieldViolation, InvalidArgument

_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")
_VERBS = ("get", "put", "post", "delete", "patch")
_INTS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


@dataclass(frozen=True)
class Route:
    """One HTTP binding of a method: ``verb`` and ``template`` as annotated."""

    method: MethodDescriptor
    verb: str
    template: str
    body: str
    pattern: re.Pattern[str]

    @property
    def variables(self) -> list[str]:
        """The fields the path sets, in order."""
        return _VARIABLE.findall(self.template)

    def match(self, path: str) -> dict[str, str] | None:
        """The path's variables by field name, or None when the path is not this route's."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: found.group(i + 1) for i, name in enumerate(self.variables)}


def compile_template(template: str) -> re.Pattern[str]:
    """A regex of a path template: each ``{field}`` is one segment."""
    # A variable is one path segment; ':' starts a custom verb, so it is never part of one.
    parts = _VARIABLE.split(template)
    regex = "".join(re.escape(p) if i % 2 == 0 else "([^/:]+)" for i, p in enumerate(parts))
    return re.compile(regex)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str, str]]:
    for verb in _VERBS:
        template = getattr(rule, verb)
        if template:
            yield verb.upper(), template, rule.body
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


_HTTP_RULE: Any = annotations_pb2.http
"""The ``google.api.http`` method option (its stub types it as a plain FieldDescriptor)."""


def routes(services: Iterable[ServiceDescriptor]) -> list[Route]:
    """Every annotated binding of the services' methods, in declaration order."""
    found: list[Route] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(_HTTP_RULE):
                continue
            rule: http_pb2.HttpRule = options.Extensions[_HTTP_RULE]
            for verb, template, body in _bindings(rule):
                found.append(Route(method, verb, template, body, compile_template(template)))
    return found


def public_services() -> list[ServiceDescriptor]:
    """The services the gateway serves to clients, whose annotations are the HTTP API."""
    from conveyor.api.auth.v1 import auth_pb2
    from conveyor.api.queues.v1 import queues_pb2
    from conveyor.api.schedules.v1 import schedules_pb2
    from conveyor.api.tasks.v1 import tasks_pb2

    return [
        tasks_pb2.DESCRIPTOR.services_by_name["TaskService"],
        schedules_pb2.DESCRIPTOR.services_by_name["ScheduleService"],
        queues_pb2.DESCRIPTOR.services_by_name["QueueService"],
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    ]


def new_request(method: MethodDescriptor) -> Message:
    """An empty request message of ``method``."""
    return message_factory.GetMessageClass(method.input_type)()


def _field(message: Message, name: str) -> FieldDescriptor | None:
    for field in message.DESCRIPTOR.fields:
        if name in (field.name, field.json_name):
            return field  # type: ignore[return-value]  # upb's descriptor is the same class
    return None


def _scalar(field: FieldDescriptor, raw: str) -> Any:
    """A query value as the JSON value json_format accepts for ``field``."""
    if field.type in _INTS:
        return int(raw, 10)
    if field.type in _FLOATS:
        return float(raw)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError("must be true or false")
        return raw.lower() in ("true", "1")
    if field.type == FieldDescriptor.TYPE_ENUM:
        return int(raw) if raw.isdigit() else raw
    return raw  # strings, bytes (base64) and well-known types written as strings


def _set_query(message: Message, key: str, values: list[str], into: dict[str, Any]) -> None:
    """Puts one query parameter into ``into`` (a JSON object for ``message``): dotted
    names reach into message fields, ``labels[k]`` or ``labels.k`` into maps."""
    head, _, rest = key.partition(".")
    if "[" in head and head.endswith("]"):
        head, _, inner = head[:-1].partition("[")
        rest = inner + ("." + rest if rest else "")
    field = _field(message, head)
    if field is None:
        raise KeyError(key)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not rest:
            raise ValueError("name a map key: labels[key]=value")
        value_field = field.message_type.fields_by_name["value"]
        into.setdefault(field.json_name, {})[rest] = _scalar(value_field, values[-1])
        return
    is_wkt = field.message_type is not None and field.message_type.full_name.startswith(
        "google.protobuf."
    )
    if field.message_type is not None and not is_wkt:
        if not rest:
            raise ValueError("name a field of it: a.b=value")
        child = message_factory.GetMessageClass(field.message_type)()
        _set_query(child, rest, values, into.setdefault(field.json_name, {}))
        return
    if rest:
        raise KeyError(key)
    if field.is_repeated:
        into[field.json_name] = [_scalar(field, v) for v in values]
    else:
        into[field.json_name] = _scalar(field, values[-1])


def build_request(
    route: Route, variables: Mapping[str, str], query: Mapping[str, list[str]], body: Any
) -> Message:
    """The request message of a call: the JSON body (already decoded) where the route
    takes one, then query parameters, then path variables. Every problem is a field
    violation of one InvalidArgument, as the gRPC side reports them."""
    request = new_request(route.method)
    if route.body:
        if not isinstance(body, dict):
            raise InvalidArgument.for_fields([FieldViolation("body", "must be a JSON object")])
        _parse(body, request, "body")
    problems: list[FieldViolation] = []
    from_query: dict[str, Any] = {}
    for key, values in query.items():
        try:
            _set_query(request, key, values, from_query)
        except KeyError:
            problems.append(FieldViolation(key, "is not a field of this request"))
        except ValueError as exc:
            problems.append(FieldViolation(key, f"has the wrong type: {exc}"))
    if problems:
        raise InvalidArgument.for_fields(problems)
    for name, value in from_query.items():
        # One field at a time, so a bad value (a malformed timestamp) is named in the error.
        _parse({name: value}, request, name)
    for name, value in variables.items():
        target: Message = request
        *path, last = name.split(".")
        for part in path:
            target = getattr(target, part)
        setattr(target, last, value)
    return request


def _parse(value: dict[str, Any], request: Message, where: str) -> None:
    try:
        json_format.ParseDict(value, request, ignore_unknown_fields=False, max_recursion_depth=64)
    except json_format.ParseError as exc:
        raise InvalidArgument.for_fields([FieldViolation(where, str(exc))]) from exc
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument.for_fields([FieldViolation(where, str(exc))]) from exc


def to_json(message: Message) -> dict[str, Any]:
    """Canonical JSON of ``message``: field names in lowerCamelCase, enums by name,
    64-bit integers as strings, fields at their default left out."""
    return protojson.to_dict(message)
