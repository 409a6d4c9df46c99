from conveyor.api.tasks.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchTasksRequest(_message.Message):
    __slots__ = ("watch_id", "start", "stop", "namespace")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    start: _tasks_pb2.WatchTaskRequest
    stop: bool
    namespace: str
    def __init__(self, watch_id: _Optional[int] = ..., start: _Optional[_Union[_tasks_pb2.WatchTaskRequest, _Mapping]] = ..., stop: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...

class WatchTasksResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[WatchUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[WatchUpdate, _Mapping]]] = ...) -> None: ...

class WatchUpdate(_message.Message):
    __slots__ = ("watch_id", "task", "end")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    task: _tasks_pb2.Task
    end: bytes
    def __init__(self, watch_id: _Optional[int] = ..., task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., end: _Optional[bytes] = ...) -> None: ...
