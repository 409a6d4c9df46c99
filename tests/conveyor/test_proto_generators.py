"""The protos for other languages' generators: every file names its Go, Java and C# home
(protoc-gen-go refuses a file without go_package), and every 64-bit integer field is a string in
JavaScript (``jstype = JS_STRING``, as proto3 JSON writes it), so a protobuf-es message holding
one goes through JSON.stringify; and a custom task's data is JSON text, never a Struct's
doubles. A field added without the option fails here, naming it."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from conveyor.transcode import public_services

_64_BIT = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def test_every_file_declares_the_options_generators_need() -> None:
    files = {service.file for service in public_services()}
    assert len(files) == 4
    for file in files:
        options = file.GetOptions()
        assert options.go_package.endswith(file.package.split(".")[-2] + "v1"), file.name
        assert options.java_package == "dev." + file.package, file.name
        assert options.java_multiple_files, file.name
        assert options.csharp_namespace.startswith("Conveyor.Api."), file.name


def _messages(message: Descriptor) -> Iterator[Descriptor]:
    yield message
    for nested in message.nested_types:
        yield from _messages(nested)


def _public_fields() -> Iterator[FieldDescriptor]:
    for service in public_services():
        for message in service.file.message_types_by_name.values():
            for descriptor in _messages(message):
                yield from descriptor.fields


def test_every_64_bit_integer_of_the_public_api_is_a_string_in_javascript() -> None:
    found = [field for field in _public_fields() if field.type in _64_BIT]
    assert len(found) >= 14  # version, progress, sizes and counts of the four services
    plain = [
        field.full_name
        for field in found
        if field.GetOptions().jstype != descriptor_pb2.FieldOptions.JS_STRING
    ]
    assert plain == []


def test_no_public_message_carries_a_struct() -> None:
    structs = [
        field.full_name
        for field in _public_fields()
        if field.message_type is not None
        and field.message_type.full_name == "google.protobuf.Struct"
        and field.full_name != "conveyor.api.tasks.v1.CustomTaskInput.payload"
    ]
    assert structs == []
