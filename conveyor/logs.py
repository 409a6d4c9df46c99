"""Logging set-up: JSON lines in deployment, readable text in a terminal.

Task id, type and attempt come from context variables, so every line logged while a task
runs carries them without being passed around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from conveyor.tracing import current_trace_id

task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="")
task_type_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_type", default="")
attempt_var: contextvars.ContextVar[int] = contextvars.ContextVar("attempt", default=0)

_service = "conveyor"


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.service = _service
        record.task_id = task_id_var.get()
        record.task_type = task_type_var.get()
        record.attempt = attempt_var.get()
        record.trace_id = current_trace_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": getattr(record, "service", _service),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("task_id", "task_type", "attempt", "trace_id"):
            value = getattr(record, key, None)
            if value:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the task context when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(service)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        task_id = getattr(record, "task_id", "")
        if task_id:
            task_type = getattr(record, "task_type", "")
            attempt = getattr(record, "attempt", 0)
            trace_id = getattr(record, "trace_id", "")
            line += f" [task={task_id} type={task_type} attempt={attempt} trace={trace_id}]"
        return line


def setup_logging(service: str, level: str = "info", fmt: str = "text") -> None:
    """Configures the root logger once for a service process."""
    global _service
    _service = service
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("nats", "aiosqlite", "asyncio", "grpc", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
