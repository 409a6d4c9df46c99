"""The SubmitTaskRequest a ``submit`` command line describes (also a schedule's template)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.cli.errors import UsageError
from conveyor.client import (
    OptionArgs,
    ai_summarization,
    batch_processing,
    custom,
    image_processing,
    text_processing,
)
from conveyor.jsonlike import NotJsonLike
from conveyor.tasks import BUILTIN_TYPES

# Input flags and the task types they apply to; "custom" stands for any non-built-in type.
_APPLIES_TO: dict[str, tuple[str, ...]] = {
    "text": ("text_processing", "ai_summarization"),
    "text_file": ("text_processing", "ai_summarization"),
    "transforms": ("text_processing",),
    "top_words": ("text_processing",),
    "max_sentences": ("ai_summarization",),
    "items": ("batch_processing",),
    "items_file": ("batch_processing",),
    "operation": ("batch_processing",),
    "chunk_size": ("batch_processing",),
    "image": ("image_processing",),
    "image_ops": ("image_processing",),
    "format": ("image_processing",),
    "output": ("image_processing",),
    "payload": ("custom",),
    "payload_file": ("custom",),
}


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _payload(args: argparse.Namespace) -> dict[str, Any]:
    raw = _read_text(args.payload_file) if args.payload_file else (args.payload or "{}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("payload must be a JSON object")
    return value


def _options(args: argparse.Namespace) -> OptionArgs:
    opts: OptionArgs = {}
    if args.max_attempts is not None:
        opts["max_attempts"] = args.max_attempts
    if args.timeout is not None:
        opts["timeout"] = args.timeout
    if args.priority is not None:
        opts["priority"] = args.priority
    if args.idempotency_key is not None:
        opts["idempotency_key"] = args.idempotency_key
    if args.labels:
        opts["labels"] = dict(args.labels)
    if args.delay is not None:
        opts["delay"] = args.delay
    if args.run_at is not None:
        opts["run_at"] = args.run_at
    return opts


def submit_request(args: argparse.Namespace) -> tasks_pb2.SubmitTaskRequest:
    """The request a ``submit`` command line describes.

    Only flags that cannot apply to TYPE are refused here; values are the gateway's to
    judge, so the CLI and every other client get the same answer.
    """
    kind = args.type if args.type in BUILTIN_TYPES else "custom"
    for flag, types in _APPLIES_TO.items():
        if getattr(args, flag, None) not in (None, []) and kind not in types:
            name = "--" + flag.replace("_", "-")
            if flag == "image_ops":
                name = "--resize/--thumbnail/--grayscale/--rotate"
            raise UsageError(f"{name} does not apply to {args.type}")
    opts = _options(args)
    text = _read_text(args.text_file) if args.text_file else (args.text or "")
    if kind == "text_processing":
        return text_processing(text, args.transforms or (), args.top_words or 0, **opts)
    if kind == "ai_summarization":
        return ai_summarization(text, args.max_sentences or 0, **opts)
    if kind == "batch_processing":
        items = _read_text(args.items_file).splitlines() if args.items_file else args.items
        return batch_processing(items or (), args.operation or 0, args.chunk_size or 0, **opts)
    if kind == "image_processing":
        image = _read_bytes(args.image) if args.image else b""
        return image_processing(image, args.image_ops or (), args.format, **opts)
    try:
        return custom(args.type, _payload(args), **opts)
    except NotJsonLike as exc:
        raise UsageError(f"{exc.field('payload')}: {exc.reason}") from None
