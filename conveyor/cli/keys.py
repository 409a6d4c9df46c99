"""``conveyor auth create-key|list-keys|revoke-key|new-key``: API keys, with an admin key.

A new key is printed once, alone on stdout (so it can be piped into a secret store), and
never again: only its hash is kept.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.api.auth.v1 import auth_pb2
from conveyor.auth import keys
from conveyor.cli.render import Output, _time
from conveyor.cli.stats import window_seconds
from conveyor.client import ROLES, AsyncClient

COMMANDS = ("auth",)
"""The top-level commands this module runs."""
_TIME = "%Y-%m-%d %H:%M"


def add_arguments(sub: Any, common: argparse.ArgumentParser) -> None:
    """Declares ``auth`` and its actions; ``common`` has no ``--namespace``, which here
    names the keys' namespace."""
    auth = sub.add_parser("auth", parents=[common], help="API keys: create, list, revoke (admin)")
    actions = auth.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create-key",
        parents=[common],
        help="make an API key (printed once)",
        description="Make an API key. It is printed once and cannot be shown again.",
    )
    create.add_argument(
        "--namespace",
        dest="key_namespace",
        metavar="NAMESPACE",
        default="default",
        help="the key's namespace (default: default)",
    )
    create.add_argument("--role", required=True, choices=list(ROLES), help="the key's role")
    create.add_argument(
        "--expires",
        type=window_seconds,
        metavar="AGE",
        help="stop working after this long, e.g. 90d, 12h (default: never)",
    )
    create.add_argument("--description", default="", help="what the key is for")
    ls = actions.add_parser("list-keys", parents=[common], help="list API keys (no secrets)")
    ls.add_argument(
        "--namespace",
        dest="key_namespace",
        metavar="NAMESPACE",
        default="",
        help="only keys of this namespace",
    )
    revoke = actions.add_parser("revoke-key", parents=[common], help="revoke an API key")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the 12 hex digits after cvk_")
    actions.add_parser(
        "new-key",
        parents=[common],
        help="print a fresh key for CONVEYOR_ADMIN_KEY_FILE (contacts nothing)",
        description="Print a fresh random key, made here and sent nowhere: the first admin "
        "key, for the file (a Kubernetes Secret) CONVEYOR_ADMIN_KEY_FILE names. The gateway "
        "stores its hash when it starts.",
    )


def _role(key: auth_pb2.ApiKey) -> str:
    return next((name for name, number in ROLES.items() if number == key.role), str(key.role))


def _status(key: auth_pb2.ApiKey) -> str:
    if key.revoked:
        return "[red]revoked[/]"
    return "[green]active[/]"


def render_keys(out: Output, keys: list[auth_pb2.ApiKey]) -> None:
    if out.as_json:
        out.json(auth_pb2.ListKeysResponse(keys=keys))
        return
    if not keys:
        out.note("no API keys")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("KEY ID", "NAMESPACE", "ROLE", "STATUS", "CREATED", "EXPIRES"):
        table.add_column(column, no_wrap=True)
    table.add_column("DESCRIPTION", overflow="fold")
    for key in keys:
        table.add_row(
            key.key_id,
            escape(key.namespace),
            _role(key),
            _status(key),
            _time(key, "create_time", _TIME),
            _time(key, "expire_time", _TIME) if key.HasField("expire_time") else "never",
            escape(key.description),
        )
    out.console.print(table)


async def create_key(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    created = await client.create_key(
        args.key_namespace, args.role, ttl=args.expires, description=args.description
    )
    if out.as_json:
        out.json(created)
    else:
        print(created.api_key)
    key = created.key
    expires = _time(key, "expire_time", _TIME) if key.HasField("expire_time") else "never"
    out.note(
        f"created API key {key.key_id}: {_role(key)} in {key.namespace}, expires {expires}. "
        "Store it now: it will not be shown again."
    )
    return 0


async def list_keys(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    render_keys(out, await client.list_keys(args.key_namespace))
    return 0


async def revoke_key(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    key = await client.revoke_key(args.key_id)
    if out.as_json:
        out.json(key)
    else:
        out.note(f"revoked API key {key.key_id} ({_role(key)} in {key.namespace})")
    return 0


async def new_key(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    print(keys.new_key())
    out.note("a new key for CONVEYOR_ADMIN_KEY_FILE; the gateway stores its hash at start")
    return 0


_ACTIONS = {
    "create-key": create_key,
    "list-keys": list_keys,
    "revoke-key": revoke_key,
    "new-key": new_key,
}


async def run_command(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """Runs ``conveyor auth ACTION`` as parsed by :func:`add_arguments`."""
    return await _ACTIONS[args.auth_command](client, out, args)
