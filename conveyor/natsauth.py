"""NATS users and permissions: one user per service role, each allowed only the subjects
its service uses. The one source of the permission set: ``conveyor dev`` writes it into
its nats-server config, the tests run nats-server with it, and
deploy/'s copies are written from it by scripts/generate-nats-auth.

Who may do what (docs/nats-security.md has the table):

- the **gateway** publishes submissions (the ``submitted`` event and the task), reads the
  streams' counts, and keeps idempotency keys, schedules and queue controls;
- a **worker** consumes TASKS, publishes its outcome events, leases permits, reads the
  cancel markers and queue controls, hears cancel signals, and asks the store to register
  its types (it cannot write the types bucket);
- the **store** alone declares the streams and buckets, consumes and reads EVENTS,
  publishes cancels and re-drives, and registers types;
- the **scheduler** submits schedule ticks, fails lost tasks and reads the queues.

Replies come to an inbox prefix of each role's own (``_INBOX_<role>``), so no role sees
another's replies (JetStream answers carry stream messages).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import subjects

ROLES = subjects.PUBLISHERS
API = "$JS.API"
OBJECT_STREAM = f"OBJ_{subjects.OBJECT_PAYLOADS}"
PASSWORD_BYTES = 32


def inbox_prefix(role: str) -> str:
    """The reply subjects' prefix of a role's connections."""
    return f"_INBOX_{role}"


@dataclass(frozen=True)
class Permissions:
    """What one role's user may publish and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False
    """Whether it may answer requests sent to it (to their reply subject, once)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "publish", tuple(dict.fromkeys(self.publish)))


def _kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _stream_info(*streams: str) -> list[str]:
    return [f"{API}.STREAM.INFO.{s}" for s in streams]


def _read_stream(stream: str) -> list[str]:
    """Reading a stream: its info, direct and stored message reads, and consumers of its
    own (what KV gets and watches, and exact bucket reads, need)."""
    return [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.*",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.*",
        f"{API}.CONSUMER.DELETE.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def _read_kv(*buckets: str) -> list[str]:
    return [s for bucket in buckets for s in _read_stream(_kv_stream(bucket))]


def _write_kv(*buckets: str) -> list[str]:
    """Putting, creating, updating and deleting keys (a KV write is a publish)."""
    return [f"$KV.{bucket}.>" for bucket in buckets]


def _objects(write: bool) -> list[str]:
    """The payload object store: reading (and with ``write``, putting and deleting)."""
    found = _read_stream(OBJECT_STREAM)
    if write:
        found += [f"$O.{subjects.OBJECT_PAYLOADS}.>", f"{API}.STREAM.PURGE.{OBJECT_STREAM}"]
    return found


_STORE_READS = tuple(b for b in subjects.KV_BUCKETS if b != subjects.KV_KEYS)
"""The API keys' hashes are the gateway's alone: the store only declares their bucket."""
_TASK_SUBJECTS = [f"{subjects.TASKS_PREFIX}.>", f"{subjects.DELAYED_PREFIX}.>"]
_STREAMS = (subjects.STREAM_TASKS, subjects.STREAM_EVENTS)


def _declare() -> list[str]:
    """Creating and updating the streams, the buckets and the object store."""
    names = [*_STREAMS, *(_kv_stream(b) for b in subjects.KV_BUCKETS), OBJECT_STREAM]
    return [f"{API}.STREAM.{op}.{name}" for name in names for op in ("CREATE", "UPDATE")]


def _submitter(role: str) -> list[str]:
    """What accepting tasks needs (the gateway's submits, the scheduler's ticks)."""
    return [
        subjects.event_filter(role),
        *_TASK_SUBJECTS,
        *_stream_info(*_STREAMS),
        f"{API}.CONSUMER.INFO.{subjects.STREAM_TASKS}.*",
        *_read_kv(subjects.KV_TYPES, subjects.KV_IDEMPOTENCY),
        *_write_kv(subjects.KV_IDEMPOTENCY),
    ]


def permissions(role: str) -> Permissions:
    """The permissions of ``role`` (one of ROLES)."""
    inbox = f"{inbox_prefix(role)}.>"
    # Account limits and stream names reveal no message (nats-py finds an object
    # store's stream by name).
    info = f"{API}.INFO", f"{API}.STREAM.NAMES"
    if role == subjects.GATEWAY:
        return Permissions(
            publish=(
                *info,
                *_submitter(role),
                *_read_kv(subjects.KV_SCHEDULES, subjects.KV_QUEUES, subjects.KV_KEYS),
                *_write_kv(subjects.KV_SCHEDULES, subjects.KV_QUEUES, subjects.KV_KEYS),
                *_stream_info(*(_kv_stream(b) for b in subjects.KV_BUCKETS)),
                *_objects(write=True),
            ),
            subscribe=(inbox,),
        )
    if role == subjects.SCHEDULER:
        return Permissions(
            publish=(
                *info,
                *_submitter(role),
                f"{API}.STREAM.MSG.GET.{subjects.STREAM_TASKS}",
                f"{API}.DIRECT.GET.{subjects.STREAM_TASKS}",
                f"{API}.DIRECT.GET.{subjects.STREAM_TASKS}.>",
                *_read_kv(subjects.KV_SCHEDULES),
                *_write_kv(subjects.KV_SCHEDULES),
                *_stream_info(*(_kv_stream(b) for b in subjects.KV_BUCKETS)),
            ),
            subscribe=(inbox,),
        )
    if role == subjects.WORKER:
        tasks = subjects.STREAM_TASKS
        return Permissions(
            publish=(
                *info,
                subjects.event_filter(role),
                subjects.REGISTER_SUBJECT,
                *_stream_info(*_STREAMS),
                f"{API}.CONSUMER.CREATE.{tasks}.>",
                f"{API}.CONSUMER.DURABLE.CREATE.{tasks}.*",
                f"{API}.CONSUMER.INFO.{tasks}.*",
                f"{API}.CONSUMER.MSG.NEXT.{tasks}.*",
                f"$JS.ACK.{tasks}.>",
                *_read_kv(subjects.KV_TYPES, subjects.KV_CANCELLED),
                *_read_kv(subjects.KV_QUEUES, subjects.KV_PERMITS),
                *_write_kv(subjects.KV_PERMITS),
                *_stream_info(*(_kv_stream(b) for b in subjects.KV_BUCKETS)),
                *_objects(write=True),
            ),
            subscribe=(inbox, subjects.CANCEL_SUBJECT),
        )
    if role == subjects.STORE:
        events = subjects.STREAM_EVENTS
        return Permissions(
            publish=(
                *info,
                subjects.event_filter(role),
                f"{subjects.TASKS_PREFIX}.>",
                subjects.CANCEL_SUBJECT,
                *_declare(),
                *_read_stream(events),
                f"{API}.CONSUMER.DURABLE.CREATE.{events}.*",
                f"{API}.STREAM.PURGE.{events}",
                f"$JS.ACK.{events}.>",
                *_stream_info(subjects.STREAM_TASKS),
                # A cancelled or re-driven task's queued message is taken out of TASKS.
                f"{API}.STREAM.PURGE.{subjects.STREAM_TASKS}",
                *_read_kv(*_STORE_READS),
                *_stream_info(_kv_stream(subjects.KV_KEYS)),
                *_write_kv(
                    subjects.KV_TYPES,
                    subjects.KV_CANCELLED,
                    subjects.KV_IDEMPOTENCY,
                    subjects.KV_STORE,
                ),
                *_objects(write=True),
            ),
            subscribe=(inbox, subjects.REGISTER_SUBJECT),
            allow_responses=True,
        )
    raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")


def _quoted(items: Iterable[str]) -> str:
    """A list, one quoted subject a line (quoted, a ``$`` is no variable)."""
    indent = "\n" + " " * 10
    return "[" + "".join(f"{indent}{json.dumps(item)}," for item in items) + "\n        ]"


def authorization(password_of: Callable[[str], str]) -> str:
    """The ``authorization`` block of a nats-server config with every role's user;
    ``password_of(role)`` is the text after ``password:`` (a quoted password, or a
    ``$VARIABLE`` the server reads from its environment)."""
    lines = ["authorization {", "  users = ["]
    for role in ROLES:
        p = permissions(role)
        lines.append(f"    {{ user: {json.dumps(role)}, password: {password_of(role)},")
        lines.append("      permissions: {")
        lines.append(f"        publish: {{ allow: {_quoted(p.publish)} }},")
        lines.append(f"        subscribe: {{ allow: {_quoted(p.subscribe)} }},")
        if p.allow_responses:
            lines.append("        allow_responses: { max: 1 },")
        lines.append("      } },")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def write_passwords(directory: Path) -> dict[str, Path]:
    """A password file per role under ``directory`` (mode 0600), made once and kept:
    ``<role>.password``. Returns each role's file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: dict[str, Path] = {}
    for role in ROLES:
        path = directory / f"{role}.password"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(PASSWORD_BYTES))
        path.chmod(0o600)
        files[role] = path
    return files


def local_authorization(files: Mapping[str, Path]) -> str:
    """The authorization block with the passwords of ``files`` written in (a config kept
    beside them, mode 0600)."""
    return authorization(lambda role: json.dumps(files[role].read_text().strip()))


def env_authorization() -> str:
    """The authorization block reading each password from ``$NATS_<ROLE>_PASSWORD`` in
    the server's environment (Kubernetes Secrets, deploy/)."""
    return authorization(lambda role: f"${password_variable(role)}")


def password_variable(role: str) -> str:
    """The nats-server environment variable holding a role's password in deploy/."""
    return f"NATS_{role.upper()}_PASSWORD"


SECRET_NAME = "conveyor-nats-users"
"""The Kubernetes Secret holding each role's password under the role's name."""


def helm_values() -> dict[str, Any]:
    """The values of the NATS Helm chart (nats-io/k8s) that add every role's user: the
    users under ``config.merge.authorization`` (``<< $VAR >>`` passes the variable to
    nats-server unquoted) and each password from the Secret in ``container.env``."""
    users = []
    for role in ROLES:
        p = permissions(role)
        granted: dict[str, Any] = {
            "publish": {"allow": list(p.publish)},
            "subscribe": {"allow": list(p.subscribe)},
        }
        if p.allow_responses:
            granted["allow_responses"] = {"max": 1}
        password = f"<< ${password_variable(role)} >>"
        users.append({"user": role, "password": password, "permissions": granted})
    env = {
        password_variable(role): {"valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": role}}}
        for role in ROLES
    }
    return {"config": {"merge": {"authorization": {"users": users}}}, "container": {"env": env}}
