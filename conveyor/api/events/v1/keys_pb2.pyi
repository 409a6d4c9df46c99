from conveyor.api.auth.v1 import auth_pb2 as _auth_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoredKey(_message.Message):
    __slots__ = ("key", "secret_sha256")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    key: _auth_pb2.ApiKey
    secret_sha256: bytes
    def __init__(self, key: _Optional[_Union[_auth_pb2.ApiKey, _Mapping]] = ..., secret_sha256: _Optional[bytes] = ...) -> None: ...
