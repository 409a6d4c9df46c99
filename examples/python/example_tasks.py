"""A task type of your own for the client examples: ``echo`` returns its arguments, so a
client sees a custom payload come back whole (integers past 2**53 included). A worker
serves it when it imports this module::

    PYTHONPATH=examples/python CONVEYOR_WORKER_IMPORTS=example_tasks conveyor dev
"""

from __future__ import annotations

from typing import Any

from conveyor import TaskContext, task


@task("echo", max_attempts=1, timeout=10, description="Returns its arguments (examples/).")
async def echo(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return payload
