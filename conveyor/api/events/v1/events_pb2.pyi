import datetime

from conveyor.api.tasks.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskMessage(_message.Message):
    __slots__ = ("task_id", "type", "input", "max_attempts", "timeout", "attempt_offset", "retry_policy", "priority", "create_time")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    type: str
    input: _tasks_pb2.TaskInput
    max_attempts: int
    timeout: _duration_pb2.Duration
    attempt_offset: int
    retry_policy: RetryPolicy
    priority: _tasks_pb2.TaskPriority
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., type: _Optional[str] = ..., input: _Optional[_Union[_tasks_pb2.TaskInput, _Mapping]] = ..., max_attempts: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., attempt_offset: _Optional[int] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., priority: _Optional[_Union[_tasks_pb2.TaskPriority, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("initial_delay", "max_delay", "multiplier")
    INITIAL_DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    initial_delay: _duration_pb2.Duration
    max_delay: _duration_pb2.Duration
    multiplier: float
    def __init__(self, initial_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ...) -> None: ...

class TaskTypeSpec(_message.Message):
    __slots__ = ("type", "max_attempts", "timeout", "retry_policy", "description", "register_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REGISTER_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    max_attempts: int
    timeout: _duration_pb2.Duration
    retry_policy: RetryPolicy
    description: str
    register_time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., max_attempts: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., description: _Optional[str] = ..., register_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Submitted(_message.Message):
    __slots__ = ("task", "input", "retry_policy")
    TASK_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    task: _tasks_pb2.Task
    input: _tasks_pb2.TaskInput
    retry_policy: RetryPolicy
    def __init__(self, task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., input: _Optional[_Union[_tasks_pb2.TaskInput, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Progressed(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: _tasks_pb2.TaskProgress
    def __init__(self, progress: _Optional[_Union[_tasks_pb2.TaskProgress, _Mapping]] = ...) -> None: ...

class Retrying(_message.Message):
    __slots__ = ("error", "next_attempt_time")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    error: _tasks_pb2.TaskError
    next_attempt_time: _timestamp_pb2.Timestamp
    def __init__(self, error: _Optional[_Union[_tasks_pb2.TaskError, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _tasks_pb2.TaskResult
    def __init__(self, result: _Optional[_Union[_tasks_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class Failed(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: _tasks_pb2.TaskError
    def __init__(self, error: _Optional[_Union[_tasks_pb2.TaskError, _Mapping]] = ...) -> None: ...

class CancelRequested(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancelled(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Redriven(_message.Message):
    __slots__ = ("attempt_offset", "max_attempts")
    ATTEMPT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    attempt_offset: int
    max_attempts: int
    def __init__(self, attempt_offset: _Optional[int] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "type", "time", "attempt", "worker_id", "start_time", "traceparent", "submitted", "started", "progressed", "retrying", "completed", "failed", "cancel_requested", "cancelled", "redriven")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESSED_FIELD_NUMBER: _ClassVar[int]
    RETRYING_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    REDRIVEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    type: str
    time: _timestamp_pb2.Timestamp
    attempt: int
    worker_id: str
    start_time: _timestamp_pb2.Timestamp
    traceparent: str
    submitted: Submitted
    started: Started
    progressed: Progressed
    retrying: Retrying
    completed: Completed
    failed: Failed
    cancel_requested: CancelRequested
    cancelled: Cancelled
    redriven: Redriven
    def __init__(self, task_id: _Optional[str] = ..., type: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ..., submitted: _Optional[_Union[Submitted, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., progressed: _Optional[_Union[Progressed, _Mapping]] = ..., retrying: _Optional[_Union[Retrying, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., failed: _Optional[_Union[Failed, _Mapping]] = ..., cancel_requested: _Optional[_Union[CancelRequested, _Mapping]] = ..., cancelled: _Optional[_Union[Cancelled, _Mapping]] = ..., redriven: _Optional[_Union[Redriven, _Mapping]] = ...) -> None: ...

class TaskEvents(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TaskEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TaskEvent, _Mapping]]] = ...) -> None: ...
