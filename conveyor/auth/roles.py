"""The role every method the gateway serves needs: one table, for gRPC and HTTP alike.

A method missing here is refused (fail closed): a method added to a proto is unusable
until someone decides who may call it, and tests/auth/test_roles.py fails until then.
"""

from __future__ import annotations

from typing import Final

from conveyor.auth.principal import Role

PUBLIC: Final = None
"""Needs no credentials: health, which Kubernetes probes ask without any."""

Need = Role | None

_TASKS = "/conveyor.api.tasks.v1.TaskService/"
_SCHEDULES = "/conveyor.api.schedules.v1.ScheduleService/"
_QUEUES = "/conveyor.api.queues.v1.QueueService/"
_AUTH = "/conveyor.api.auth.v1.AuthService/"

REQUIRED: Final[dict[str, Need]] = {
    # Reads of the caller's namespace.
    _TASKS + "GetTask": Role.READER,
    _TASKS + "ListTasks": Role.READER,
    _TASKS + "WatchTask": Role.READER,
    _TASKS + "WatchTasks": Role.READER,
    _TASKS + "GetTaskStats": Role.READER,
    _TASKS + "GetTaskPayload": Role.READER,
    _SCHEDULES + "GetSchedule": Role.READER,
    _SCHEDULES + "ListSchedules": Role.READER,
    _QUEUES + "ListQueues": Role.READER,
    _AUTH + "WhoAmI": Role.READER,
    # What a producer of tasks does to its own tasks.
    _TASKS + "SubmitTask": Role.SUBMITTER,
    _TASKS + "SubmitTasks": Role.SUBMITTER,
    _TASKS + "CancelTask": Role.SUBMITTER,
    _TASKS + "RetryTask": Role.SUBMITTER,
    _TASKS + "DeleteTask": Role.SUBMITTER,
    # Running the system: schedules, queue controls, and purging finished tasks in bulk
    # (housekeeping of one namespace, what retention does by itself; not a credential or
    # a cross-namespace power, which is what admin is for).
    _TASKS + "PurgeTasks": Role.OPERATOR,
    _SCHEDULES + "CreateSchedule": Role.OPERATOR,
    _SCHEDULES + "PauseSchedule": Role.OPERATOR,
    _SCHEDULES + "ResumeSchedule": Role.OPERATOR,
    _SCHEDULES + "DeleteSchedule": Role.OPERATOR,
    _SCHEDULES + "TriggerSchedule": Role.OPERATOR,
    _QUEUES + "PauseQueue": Role.OPERATOR,
    _QUEUES + "ResumeQueue": Role.OPERATOR,
    _QUEUES + "SetQueueLimits": Role.OPERATOR,
    # Credentials: listing them shows every namespace's keys.
    _AUTH + "CreateKey": Role.ADMIN,
    _AUTH + "ListKeys": Role.ADMIN,
    _AUTH + "RevokeKey": Role.ADMIN,
    # Probes.
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.health.v1.Health/List": PUBLIC,
    # Reflection describes the API to any caller with valid credentials (grpcurl, buf curl).
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Role.READER,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.READER,
}


def method_path(service: str, method: str) -> str:
    """A method's name as gRPC puts it on the wire and this table keys it."""
    return f"/{service}/{method}"
