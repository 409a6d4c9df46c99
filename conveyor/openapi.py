"""OpenAPI 3 of the HTTP door, made from the protos by ``scripts/generate-protos``.

The paths are conveyor.transcode's routes (the same mapping the gateway serves), the
schemas protobuf's canonical JSON of each message, the descriptions the protos' comments
(read from a descriptor set built with source info). Run as
``python -m conveyor.openapi DESCRIPTOR_SET OPENAPI_JSON HTTP_MD``: writes the document and
the route table of docs/http.md, between its ``routes`` markers.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from conveyor import transcode

Comments = dict[tuple[str, tuple[int, ...]], str]
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "3.5s"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {"type": "object", "additionalProperties": True},
}
_T = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # The canonical JSON writes 64-bit integers as strings (JavaScript numbers lose them).
    _T.TYPE_INT64: {"type": "string", "format": "int64"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}


def comments(descriptor_set: descriptor_pb2.FileDescriptorSet) -> Comments:
    """Each element's leading comment by (file, source path)."""
    found: Comments = {}
    for file in descriptor_set.file:
        for location in file.source_code_info.location:
            if location.leading_comments:
                text = " ".join(location.leading_comments.split())
                found[(file.name, tuple(location.path))] = text
    return found


def _path(item: Descriptor | EnumDescriptor | FieldDescriptor) -> tuple[int, ...]:
    """The element's path in its file's source info (descriptor.proto's field numbers)."""
    if isinstance(item, FieldDescriptor):
        assert item.containing_type is not None  # a field of a message, not an extension
        return (*_path(item.containing_type), 2, item.index)
    parent = item.containing_type
    if isinstance(item, EnumDescriptor):
        if parent is None:
            return (5, list(item.file.enum_types_by_name.values()).index(item))
        return (*_path(parent), 4, list(parent.enum_types).index(item))
    if parent is None:
        return (4, list(item.file.message_types_by_name.values()).index(item))
    return (*_path(parent), 3, list(parent.nested_types).index(item))


class _Builder:
    def __init__(self, notes: Comments) -> None:
        self.notes = notes
        self.schemas: dict[str, Any] = {}

    def note(self, file: str, path: tuple[int, ...]) -> dict[str, str]:
        text = self.notes.get((file, path), "")
        return {"description": text} if text else {}

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placed first: messages may recurse
            self.schemas[message.full_name] = self.message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def message(self, message: Descriptor) -> dict[str, Any]:
        properties = {f.json_name: self.field(f) for f in message.fields}
        file = message.file.name
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        return schema | self.note(file, _path(message))

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            value = self.single(kind.fields_by_name["value"])
            schema: dict[str, Any] = {"type": "object", "additionalProperties": value}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.single(field)}
        else:
            schema = self.single(field)
        assert field.containing_type is not None
        return schema | self.note(field.containing_type.file.name, _path(field))

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS[field.type])


def _parameters(route: transcode.Route) -> list[dict[str, Any]]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.variables
    ]
    if route.body:
        return path
    query = []
    for field in route.method.input_type.fields:
        if field.name in route.variables:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            name, schema = f"{field.json_name}[key]", {"type": "string"}
        elif field.message_type is not None and field.message_type.full_name in _WELL_KNOWN:
            name, schema = field.json_name, dict(_WELL_KNOWN[field.message_type.full_name])
        elif field.message_type is not None:
            continue  # nested messages go as a.b=value; not listed one by one
        else:
            name = field.json_name
            schema = _Builder({}).field(field)
        query.append({"name": name, "in": "query", "schema": schema})
    return path + query


def document(services: list[ServiceDescriptor], notes: Comments) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the services' annotated methods."""
    builder = _Builder(notes)
    paths: dict[str, dict[str, Any]] = {}
    status = {"$ref": "#/components/schemas/google.rpc.Status"}
    for route in transcode.routes(services):
        method: MethodDescriptor = route.method
        service = method.containing_service
        summary = notes.get((service.file.name, (6, service.index, 2, method.index)), "")
        answer = builder.ref(method.output_type)
        content = {"application/json": {"schema": answer}}
        if method.server_streaming:
            content = {"text/event-stream": {"schema": {"type": "string"}}}
        operation: dict[str, Any] = {
            "operationId": f"{service.name}_{method.name}",
            "tags": [service.name],
            "summary": method.name,
            "description": summary,
            "parameters": _parameters(route),
            "responses": {
                "200": {"description": "OK", "content": content},
                "default": {
                    "description": "An error: google.rpc.Status",
                    "content": {"application/json": {"schema": status}},
                },
            },
        }
        if route.body:
            body = {"application/json": {"schema": builder.ref(method.input_type)}}
            operation["requestBody"] = {"required": False, "content": body}
        paths.setdefault(route.template, {})[route.verb.lower()] = operation
    builder.schemas["google.rpc.Status"] = {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Conveyor", "version": "v1"},
        "paths": paths,
        "components": {"schemas": dict(sorted(builder.schemas.items()))},
    }


def route_table(services: list[ServiceDescriptor]) -> str:
    """The markdown table of docs/http.md: each route and its gRPC method."""
    lines = ["| HTTP | gRPC method | body |", "|---|---|---|"]
    for route in transcode.routes(services):
        body = "JSON request" if route.body else "none (query parameters)"
        if route.method.server_streaming:
            body = "none; answers Server-Sent Events"
        full = f"{route.method.containing_service.name}.{route.method.name}"
        lines.append(f"| `{route.verb} {route.template}` | `{full}` | {body} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    services = transcode.public_services()
    source, out, markdown = (Path(a) for a in argv)
    notes = comments(descriptor_pb2.FileDescriptorSet.FromString(source.read_bytes()))
    out.write_text(json.dumps(document(services, notes), indent=1) + "\n")
    text = markdown.read_text()
    table = f"<!-- routes -->\n{route_table(services)}\n<!-- /routes -->"
    markdown.write_text(re.sub(r"<!-- routes -->.*<!-- /routes -->", table, text, flags=re.S))


if __name__ == "__main__":
    main(sys.argv[1:])
