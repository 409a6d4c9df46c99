"""The OpenAPI document and docs/http.md's route table match the protos' annotations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from conveyor import openapi, transcode

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_document_is_what_the_protos_give(tmp_path: Path) -> None:
    protos = sorted(
        str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos/conveyor").rglob("*.proto")
    )
    out = tmp_path / "set.pb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "protos", "--include_source_info",
         "--include_imports", f"--descriptor_set_out={out}", *protos],
        cwd=ROOT, check=True,
    )  # fmt: skip
    notes = openapi.comments(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()))
    fresh = openapi.document(transcode.public_services(), notes)
    committed = json.loads((ROOT / "conveyor/api/openapi.json").read_text())
    assert committed == fresh, "stale: run scripts/generate-protos"
    assert openapi.route_table(transcode.public_services()) in (ROOT / "docs/http.md").read_text()


def test_every_route_is_in_the_document_with_its_verb() -> None:
    document = json.loads((ROOT / "conveyor/api/openapi.json").read_text())
    routes = transcode.routes(transcode.public_services())
    assert len(routes) >= 21
    for route in routes:
        operation = document["paths"][route.template][route.verb.lower()]
        assert operation["description"], f"{route.method.name} has no comment"
        assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == route.variables
