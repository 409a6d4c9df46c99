import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_SCHEDULED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_RETRYING: _ClassVar[TaskState]
    TASK_STATE_COMPLETED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]

class TaskPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_PRIORITY_UNSPECIFIED: _ClassVar[TaskPriority]
    TASK_PRIORITY_HIGH: _ClassVar[TaskPriority]
    TASK_PRIORITY_NORMAL: _ClassVar[TaskPriority]
    TASK_PRIORITY_LOW: _ClassVar[TaskPriority]

class TaskView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_VIEW_UNSPECIFIED: _ClassVar[TaskView]
    TASK_VIEW_BASIC: _ClassVar[TaskView]
    TASK_VIEW_FULL: _ClassVar[TaskView]

class TextTransform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT_TRANSFORM_UNSPECIFIED: _ClassVar[TextTransform]
    TEXT_TRANSFORM_UPPER: _ClassVar[TextTransform]
    TEXT_TRANSFORM_LOWER: _ClassVar[TextTransform]
    TEXT_TRANSFORM_TITLE: _ClassVar[TextTransform]
    TEXT_TRANSFORM_REVERSE: _ClassVar[TextTransform]
    TEXT_TRANSFORM_SLUG: _ClassVar[TextTransform]
    TEXT_TRANSFORM_NORMALIZE_WHITESPACE: _ClassVar[TextTransform]
    TEXT_TRANSFORM_STRIP_PUNCTUATION: _ClassVar[TextTransform]

class BatchOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_OPERATION_UNSPECIFIED: _ClassVar[BatchOperation]
    BATCH_OPERATION_UPPERCASE: _ClassVar[BatchOperation]
    BATCH_OPERATION_REVERSE: _ClassVar[BatchOperation]
    BATCH_OPERATION_SHA256: _ClassVar[BatchOperation]
    BATCH_OPERATION_WORD_COUNT: _ClassVar[BatchOperation]
    BATCH_OPERATION_SQUARE: _ClassVar[BatchOperation]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]
    IMAGE_FORMAT_GIF: _ClassVar[ImageFormat]
    IMAGE_FORMAT_BMP: _ClassVar[ImageFormat]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_SCHEDULED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_RETRYING: TaskState
TASK_STATE_COMPLETED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_PRIORITY_UNSPECIFIED: TaskPriority
TASK_PRIORITY_HIGH: TaskPriority
TASK_PRIORITY_NORMAL: TaskPriority
TASK_PRIORITY_LOW: TaskPriority
TASK_VIEW_UNSPECIFIED: TaskView
TASK_VIEW_BASIC: TaskView
TASK_VIEW_FULL: TaskView
TEXT_TRANSFORM_UNSPECIFIED: TextTransform
TEXT_TRANSFORM_UPPER: TextTransform
TEXT_TRANSFORM_LOWER: TextTransform
TEXT_TRANSFORM_TITLE: TextTransform
TEXT_TRANSFORM_REVERSE: TextTransform
TEXT_TRANSFORM_SLUG: TextTransform
TEXT_TRANSFORM_NORMALIZE_WHITESPACE: TextTransform
TEXT_TRANSFORM_STRIP_PUNCTUATION: TextTransform
BATCH_OPERATION_UNSPECIFIED: BatchOperation
BATCH_OPERATION_UPPERCASE: BatchOperation
BATCH_OPERATION_REVERSE: BatchOperation
BATCH_OPERATION_SHA256: BatchOperation
BATCH_OPERATION_WORD_COUNT: BatchOperation
BATCH_OPERATION_SQUARE: BatchOperation
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
IMAGE_FORMAT_GIF: ImageFormat
IMAGE_FORMAT_BMP: ImageFormat

class TextProcessingInput(_message.Message):
    __slots__ = ("text", "transforms", "top_words")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    TOP_WORDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    transforms: _containers.RepeatedScalarFieldContainer[TextTransform]
    top_words: int
    def __init__(self, text: _Optional[str] = ..., transforms: _Optional[_Iterable[_Union[TextTransform, str]]] = ..., top_words: _Optional[int] = ...) -> None: ...

class AiSummarizationInput(_message.Message):
    __slots__ = ("text", "max_sentences")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_SENTENCES_FIELD_NUMBER: _ClassVar[int]
    text: str
    max_sentences: int
    def __init__(self, text: _Optional[str] = ..., max_sentences: _Optional[int] = ...) -> None: ...

class BatchProcessingInput(_message.Message):
    __slots__ = ("items", "operation", "chunk_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    operation: BatchOperation
    chunk_size: int
    def __init__(self, items: _Optional[_Iterable[str]] = ..., operation: _Optional[_Union[BatchOperation, str]] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ImageResize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ImageThumbnail(_message.Message):
    __slots__ = ("max_width", "max_height")
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    max_width: int
    max_height: int
    def __init__(self, max_width: _Optional[int] = ..., max_height: _Optional[int] = ...) -> None: ...

class ImageGrayscale(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImageRotate(_message.Message):
    __slots__ = ("degrees",)
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    degrees: float
    def __init__(self, degrees: _Optional[float] = ...) -> None: ...

class ImageOperation(_message.Message):
    __slots__ = ("resize", "thumbnail", "grayscale", "rotate")
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    GRAYSCALE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    resize: ImageResize
    thumbnail: ImageThumbnail
    grayscale: ImageGrayscale
    rotate: ImageRotate
    def __init__(self, resize: _Optional[_Union[ImageResize, _Mapping]] = ..., thumbnail: _Optional[_Union[ImageThumbnail, _Mapping]] = ..., grayscale: _Optional[_Union[ImageGrayscale, _Mapping]] = ..., rotate: _Optional[_Union[ImageRotate, _Mapping]] = ...) -> None: ...

class ImageProcessingInput(_message.Message):
    __slots__ = ("image", "operations", "output_format")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    operations: _containers.RepeatedCompositeFieldContainer[ImageOperation]
    output_format: ImageFormat
    def __init__(self, image: _Optional[bytes] = ..., operations: _Optional[_Iterable[_Union[ImageOperation, _Mapping]]] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class CustomTaskInput(_message.Message):
    __slots__ = ("type", "payload", "json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    payload: _struct_pb2.Struct
    json: str
    def __init__(self, type: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., json: _Optional[str] = ...) -> None: ...

class CustomTaskResult(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class TaskOptions(_message.Message):
    __slots__ = ("max_attempts", "timeout", "priority", "idempotency_key", "labels", "run_at", "delay")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    timeout: _duration_pb2.Duration
    priority: TaskPriority
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    run_at: _timestamp_pb2.Timestamp
    delay: _duration_pb2.Duration
    def __init__(self, max_attempts: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., priority: _Optional[_Union[TaskPriority, str]] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TaskInput(_message.Message):
    __slots__ = ("text_processing", "ai_summarization", "batch_processing", "image_processing", "custom", "payload")
    TEXT_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    AI_SUMMARIZATION_FIELD_NUMBER: _ClassVar[int]
    BATCH_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    text_processing: TextProcessingInput
    ai_summarization: AiSummarizationInput
    batch_processing: BatchProcessingInput
    image_processing: ImageProcessingInput
    custom: CustomTaskInput
    payload: Payload
    def __init__(self, text_processing: _Optional[_Union[TextProcessingInput, _Mapping]] = ..., ai_summarization: _Optional[_Union[AiSummarizationInput, _Mapping]] = ..., batch_processing: _Optional[_Union[BatchProcessingInput, _Mapping]] = ..., image_processing: _Optional[_Union[ImageProcessingInput, _Mapping]] = ..., custom: _Optional[_Union[CustomTaskInput, _Mapping]] = ..., payload: _Optional[_Union[Payload, _Mapping]] = ...) -> None: ...

class WordCount(_message.Message):
    __slots__ = ("word", "count")
    WORD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    word: str
    count: int
    def __init__(self, word: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class TransformOutput(_message.Message):
    __slots__ = ("transform", "text")
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    transform: TextTransform
    text: str
    def __init__(self, transform: _Optional[_Union[TextTransform, str]] = ..., text: _Optional[str] = ...) -> None: ...

class TextProcessingResult(_message.Message):
    __slots__ = ("characters", "characters_excluding_spaces", "words", "unique_words", "sentences", "lines", "paragraphs", "average_word_length", "top_words", "transforms")
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_EXCLUDING_SPACES_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_WORDS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    PARAGRAPHS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_WORD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TOP_WORDS_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    characters: int
    characters_excluding_spaces: int
    words: int
    unique_words: int
    sentences: int
    lines: int
    paragraphs: int
    average_word_length: float
    top_words: _containers.RepeatedCompositeFieldContainer[WordCount]
    transforms: _containers.RepeatedCompositeFieldContainer[TransformOutput]
    def __init__(self, characters: _Optional[int] = ..., characters_excluding_spaces: _Optional[int] = ..., words: _Optional[int] = ..., unique_words: _Optional[int] = ..., sentences: _Optional[int] = ..., lines: _Optional[int] = ..., paragraphs: _Optional[int] = ..., average_word_length: _Optional[float] = ..., top_words: _Optional[_Iterable[_Union[WordCount, _Mapping]]] = ..., transforms: _Optional[_Iterable[_Union[TransformOutput, _Mapping]]] = ...) -> None: ...

class ScoredSentence(_message.Message):
    __slots__ = ("index", "text", "score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    score: float
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class AiSummarizationResult(_message.Message):
    __slots__ = ("summary", "sentences", "original_sentence_count", "compression_ratio")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SENTENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    summary: str
    sentences: _containers.RepeatedCompositeFieldContainer[ScoredSentence]
    original_sentence_count: int
    compression_ratio: float
    def __init__(self, summary: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[ScoredSentence, _Mapping]]] = ..., original_sentence_count: _Optional[int] = ..., compression_ratio: _Optional[float] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("index", "ok", "output", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    ok: bool
    output: str
    error: str
    def __init__(self, index: _Optional[int] = ..., ok: _Optional[bool] = ..., output: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class BatchProcessingResult(_message.Message):
    __slots__ = ("items", "total", "succeeded", "failed", "chunks")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    total: int
    succeeded: int
    failed: int
    chunks: int
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ..., total: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class ImageProcessingResult(_message.Message):
    __slots__ = ("image", "format", "width", "height", "mode", "original_width", "original_height", "original_format", "size_bytes")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    format: ImageFormat
    width: int
    height: int
    mode: str
    original_width: int
    original_height: int
    original_format: ImageFormat
    size_bytes: int
    def __init__(self, image: _Optional[bytes] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., mode: _Optional[str] = ..., original_width: _Optional[int] = ..., original_height: _Optional[int] = ..., original_format: _Optional[_Union[ImageFormat, str]] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256", "content_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    content_type: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("text_processing", "ai_summarization", "batch_processing", "image_processing", "custom", "payload")
    TEXT_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    AI_SUMMARIZATION_FIELD_NUMBER: _ClassVar[int]
    BATCH_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    text_processing: TextProcessingResult
    ai_summarization: AiSummarizationResult
    batch_processing: BatchProcessingResult
    image_processing: ImageProcessingResult
    custom: CustomTaskResult
    payload: Payload
    def __init__(self, text_processing: _Optional[_Union[TextProcessingResult, _Mapping]] = ..., ai_summarization: _Optional[_Union[AiSummarizationResult, _Mapping]] = ..., batch_processing: _Optional[_Union[BatchProcessingResult, _Mapping]] = ..., image_processing: _Optional[_Union[ImageProcessingResult, _Mapping]] = ..., custom: _Optional[_Union[CustomTaskResult, _Mapping]] = ..., payload: _Optional[_Union[Payload, _Mapping]] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("attempt", "type", "message", "time", "traceback")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    type: str
    message: str
    time: _timestamp_pb2.Timestamp
    traceback: str
    def __init__(self, attempt: _Optional[int] = ..., type: _Optional[str] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceback: _Optional[str] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("current", "total", "message")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    current: int
    total: int
    message: str
    def __init__(self, current: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "type", "state", "attempt", "max_attempts", "priority", "labels", "idempotency_key", "result", "error", "attempt_errors", "progress", "timeout", "create_time", "update_time", "start_time", "end_time", "run_at", "next_attempt_time", "version", "cancel_requested", "schedule_id", "worker_id", "namespace", "input", "trace_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    state: TaskState
    attempt: int
    max_attempts: int
    priority: TaskPriority
    labels: _containers.ScalarMap[str, str]
    idempotency_key: str
    result: TaskResult
    error: TaskError
    attempt_errors: _containers.RepeatedCompositeFieldContainer[TaskError]
    progress: TaskProgress
    timeout: _duration_pb2.Duration
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    run_at: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    version: int
    cancel_requested: bool
    schedule_id: str
    worker_id: str
    namespace: str
    input: TaskInput
    trace_id: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., priority: _Optional[_Union[TaskPriority, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., result: _Optional[_Union[TaskResult, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., attempt_errors: _Optional[_Iterable[_Union[TaskError, _Mapping]]] = ..., progress: _Optional[_Union[TaskProgress, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., cancel_requested: _Optional[bool] = ..., schedule_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., namespace: _Optional[str] = ..., input: _Optional[_Union[TaskInput, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class SubmitTaskRequest(_message.Message):
    __slots__ = ("text_processing", "ai_summarization", "batch_processing", "image_processing", "custom", "options")
    TEXT_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    AI_SUMMARIZATION_FIELD_NUMBER: _ClassVar[int]
    BATCH_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PROCESSING_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    text_processing: TextProcessingInput
    ai_summarization: AiSummarizationInput
    batch_processing: BatchProcessingInput
    image_processing: ImageProcessingInput
    custom: CustomTaskInput
    options: TaskOptions
    def __init__(self, text_processing: _Optional[_Union[TextProcessingInput, _Mapping]] = ..., ai_summarization: _Optional[_Union[AiSummarizationInput, _Mapping]] = ..., batch_processing: _Optional[_Union[BatchProcessingInput, _Mapping]] = ..., image_processing: _Optional[_Union[ImageProcessingInput, _Mapping]] = ..., custom: _Optional[_Union[CustomTaskInput, _Mapping]] = ..., options: _Optional[_Union[TaskOptions, _Mapping]] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("task", "deduplicated")
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    task: Task
    deduplicated: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class SubmitTasksRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SubmitTaskRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SubmitTaskRequest, _Mapping]]] = ...) -> None: ...

class SubmitTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id", "omit_payloads", "view")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OMIT_PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    omit_payloads: bool
    view: TaskView
    def __init__(self, task_id: _Optional[str] = ..., omit_payloads: _Optional[bool] = ..., view: _Optional[_Union[TaskView, str]] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("states", "type", "labels", "page_size", "page_token", "created_after", "created_before")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    type: str
    labels: _containers.ScalarMap[str, str]
    page_size: int
    page_token: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., type: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("task_id", "after_version", "omit_payloads")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    OMIT_PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    after_version: int
    omit_payloads: bool
    def __init__(self, task_id: _Optional[str] = ..., after_version: _Optional[int] = ..., omit_payloads: _Optional[bool] = ...) -> None: ...

class WatchTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class WatchTasksRequest(_message.Message):
    __slots__ = ("states", "type", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    type: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., type: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WatchTasksResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class RetryTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class GetTaskPayloadRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskPayloadResponse(_message.Message):
    __slots__ = ("payload", "data")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    payload: Payload
    data: bytes
    def __init__(self, payload: _Optional[_Union[Payload, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetTaskStatsRequest(_message.Message):
    __slots__ = ("window", "type", "top_errors", "bucket")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TOP_ERRORS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    type: str
    top_errors: int
    bucket: _duration_pb2.Duration
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., type: _Optional[str] = ..., top_errors: _Optional[int] = ..., bucket: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TimeBucket(_message.Message):
    __slots__ = ("start_time", "submitted", "completed", "failed")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    submitted: int
    completed: int
    failed: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submitted: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: TaskState
    count: int
    def __init__(self, state: _Optional[_Union[TaskState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class DurationSummary(_message.Message):
    __slots__ = ("count", "p50", "p95", "p99", "max")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    count: int
    p50: _duration_pb2.Duration
    p95: _duration_pb2.Duration
    p99: _duration_pb2.Duration
    max: _duration_pb2.Duration
    def __init__(self, count: _Optional[int] = ..., p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ErrorCount(_message.Message):
    __slots__ = ("type", "message", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    count: int
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class TypeStats(_message.Message):
    __slots__ = ("type", "total", "states", "success_rate", "retry_rate", "run_time", "queue_wait", "top_errors")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    RETRY_RATE_FIELD_NUMBER: _ClassVar[int]
    RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_FIELD_NUMBER: _ClassVar[int]
    TOP_ERRORS_FIELD_NUMBER: _ClassVar[int]
    type: str
    total: int
    states: _containers.RepeatedCompositeFieldContainer[StateCount]
    success_rate: float
    retry_rate: float
    run_time: DurationSummary
    queue_wait: DurationSummary
    top_errors: _containers.RepeatedCompositeFieldContainer[ErrorCount]
    def __init__(self, type: _Optional[str] = ..., total: _Optional[int] = ..., states: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., success_rate: _Optional[float] = ..., retry_rate: _Optional[float] = ..., run_time: _Optional[_Union[DurationSummary, _Mapping]] = ..., queue_wait: _Optional[_Union[DurationSummary, _Mapping]] = ..., top_errors: _Optional[_Iterable[_Union[ErrorCount, _Mapping]]] = ...) -> None: ...

class GetTaskStatsResponse(_message.Message):
    __slots__ = ("types", "since", "series")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedCompositeFieldContainer[TypeStats]
    since: _timestamp_pb2.Timestamp
    series: _containers.RepeatedCompositeFieldContainer[TimeBucket]
    def __init__(self, types: _Optional[_Iterable[_Union[TypeStats, _Mapping]]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., series: _Optional[_Iterable[_Union[TimeBucket, _Mapping]]] = ...) -> None: ...

class DeleteTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class DeleteTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PurgeTasksRequest(_message.Message):
    __slots__ = ("states", "type", "older_than")
    STATES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    type: str
    older_than: _duration_pb2.Duration
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., type: _Optional[str] = ..., older_than: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PurgeTasksResponse(_message.Message):
    __slots__ = ("purged_count",)
    PURGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    purged_count: int
    def __init__(self, purged_count: _Optional[int] = ...) -> None: ...
