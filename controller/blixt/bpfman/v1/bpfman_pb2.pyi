from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BpfmanProgramType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    XDP: _ClassVar[BpfmanProgramType]
    TC: _ClassVar[BpfmanProgramType]
    TRACEPOINT: _ClassVar[BpfmanProgramType]
    KPROBE: _ClassVar[BpfmanProgramType]
    UPROBE: _ClassVar[BpfmanProgramType]
    FENTRY: _ClassVar[BpfmanProgramType]
    FEXIT: _ClassVar[BpfmanProgramType]
    TCX: _ClassVar[BpfmanProgramType]
XDP: BpfmanProgramType
TC: BpfmanProgramType
TRACEPOINT: BpfmanProgramType
KPROBE: BpfmanProgramType
UPROBE: BpfmanProgramType
FENTRY: BpfmanProgramType
FEXIT: BpfmanProgramType
TCX: BpfmanProgramType

class BytecodeImage(_message.Message):
    __slots__ = ("url", "image_pull_policy", "username", "password")
    URL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_POLICY_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    url: str
    image_pull_policy: int
    username: str
    password: str
    def __init__(self, url: _Optional[str] = ..., image_pull_policy: _Optional[int] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class BytecodeLocation(_message.Message):
    __slots__ = ("image", "file")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    image: BytecodeImage
    file: str
    def __init__(self, image: _Optional[_Union[BytecodeImage, _Mapping]] = ..., file: _Optional[str] = ...) -> None: ...

class KernelProgramInfo(_message.Message):
    __slots__ = ("id", "name", "program_type", "loaded_at", "tag", "gpl_compatible", "map_ids", "btf_id", "bytes_xlated", "jited", "bytes_jited", "bytes_memlock", "verified_insns")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    GPL_COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    MAP_IDS_FIELD_NUMBER: _ClassVar[int]
    BTF_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_XLATED_FIELD_NUMBER: _ClassVar[int]
    JITED_FIELD_NUMBER: _ClassVar[int]
    BYTES_JITED_FIELD_NUMBER: _ClassVar[int]
    BYTES_MEMLOCK_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_INSNS_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    program_type: int
    loaded_at: str
    tag: str
    gpl_compatible: bool
    map_ids: _containers.RepeatedScalarFieldContainer[int]
    btf_id: int
    bytes_xlated: int
    jited: bool
    bytes_jited: int
    bytes_memlock: int
    verified_insns: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., program_type: _Optional[int] = ..., loaded_at: _Optional[str] = ..., tag: _Optional[str] = ..., gpl_compatible: _Optional[bool] = ..., map_ids: _Optional[_Iterable[int]] = ..., btf_id: _Optional[int] = ..., bytes_xlated: _Optional[int] = ..., jited: _Optional[bool] = ..., bytes_jited: _Optional[int] = ..., bytes_memlock: _Optional[int] = ..., verified_insns: _Optional[int] = ...) -> None: ...

class ProgramInfo(_message.Message):
    __slots__ = ("name", "bytecode", "links", "global_data", "map_owner_id", "map_pin_path", "map_used_by", "metadata")
    class GlobalDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTECODE_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_DATA_FIELD_NUMBER: _ClassVar[int]
    MAP_OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    MAP_PIN_PATH_FIELD_NUMBER: _ClassVar[int]
    MAP_USED_BY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    bytecode: BytecodeLocation
    links: _containers.RepeatedScalarFieldContainer[int]
    global_data: _containers.ScalarMap[str, bytes]
    map_owner_id: int
    map_pin_path: str
    map_used_by: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., bytecode: _Optional[_Union[BytecodeLocation, _Mapping]] = ..., links: _Optional[_Iterable[int]] = ..., global_data: _Optional[_Mapping[str, bytes]] = ..., map_owner_id: _Optional[int] = ..., map_pin_path: _Optional[str] = ..., map_used_by: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class XDPAttachInfo(_message.Message):
    __slots__ = ("priority", "iface", "position", "proceed_on", "netns", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IFACE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PROCEED_ON_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    priority: int
    iface: str
    position: int
    proceed_on: _containers.RepeatedScalarFieldContainer[int]
    netns: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, priority: _Optional[int] = ..., iface: _Optional[str] = ..., position: _Optional[int] = ..., proceed_on: _Optional[_Iterable[int]] = ..., netns: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TCAttachInfo(_message.Message):
    __slots__ = ("priority", "iface", "position", "direction", "proceed_on", "netns", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IFACE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PROCEED_ON_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    priority: int
    iface: str
    position: int
    direction: str
    proceed_on: _containers.RepeatedScalarFieldContainer[int]
    netns: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, priority: _Optional[int] = ..., iface: _Optional[str] = ..., position: _Optional[int] = ..., direction: _Optional[str] = ..., proceed_on: _Optional[_Iterable[int]] = ..., netns: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TCXAttachInfo(_message.Message):
    __slots__ = ("priority", "iface", "position", "direction", "netns", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IFACE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    priority: int
    iface: str
    position: int
    direction: str
    netns: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, priority: _Optional[int] = ..., iface: _Optional[str] = ..., position: _Optional[int] = ..., direction: _Optional[str] = ..., netns: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TracepointAttachInfo(_message.Message):
    __slots__ = ("tracepoint", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRACEPOINT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    tracepoint: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, tracepoint: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class KprobeAttachInfo(_message.Message):
    __slots__ = ("fn_name", "offset", "container_pid", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FN_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    fn_name: str
    offset: int
    container_pid: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, fn_name: _Optional[str] = ..., offset: _Optional[int] = ..., container_pid: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UprobeAttachInfo(_message.Message):
    __slots__ = ("fn_name", "offset", "target", "pid", "container_pid", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FN_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    fn_name: str
    offset: int
    target: str
    pid: int
    container_pid: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, fn_name: _Optional[str] = ..., offset: _Optional[int] = ..., target: _Optional[str] = ..., pid: _Optional[int] = ..., container_pid: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FentryAttachInfo(_message.Message):
    __slots__ = ("metadata",)
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FexitAttachInfo(_message.Message):
    __slots__ = ("metadata",)
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AttachInfo(_message.Message):
    __slots__ = ("xdp_attach_info", "tc_attach_info", "tracepoint_attach_info", "kprobe_attach_info", "uprobe_attach_info", "tcx_attach_info", "fentry_attach_info", "fexit_attach_info")
    XDP_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    TC_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    TRACEPOINT_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    KPROBE_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    UPROBE_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    TCX_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    FENTRY_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    FEXIT_ATTACH_INFO_FIELD_NUMBER: _ClassVar[int]
    xdp_attach_info: XDPAttachInfo
    tc_attach_info: TCAttachInfo
    tracepoint_attach_info: TracepointAttachInfo
    kprobe_attach_info: KprobeAttachInfo
    uprobe_attach_info: UprobeAttachInfo
    tcx_attach_info: TCXAttachInfo
    fentry_attach_info: FentryAttachInfo
    fexit_attach_info: FexitAttachInfo
    def __init__(self, xdp_attach_info: _Optional[_Union[XDPAttachInfo, _Mapping]] = ..., tc_attach_info: _Optional[_Union[TCAttachInfo, _Mapping]] = ..., tracepoint_attach_info: _Optional[_Union[TracepointAttachInfo, _Mapping]] = ..., kprobe_attach_info: _Optional[_Union[KprobeAttachInfo, _Mapping]] = ..., uprobe_attach_info: _Optional[_Union[UprobeAttachInfo, _Mapping]] = ..., tcx_attach_info: _Optional[_Union[TCXAttachInfo, _Mapping]] = ..., fentry_attach_info: _Optional[_Union[FentryAttachInfo, _Mapping]] = ..., fexit_attach_info: _Optional[_Union[FexitAttachInfo, _Mapping]] = ...) -> None: ...

class LoadRequest(_message.Message):
    __slots__ = ("bytecode", "metadata", "global_data", "uuid", "map_owner_id", "info")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class GlobalDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    BYTECODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_DATA_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MAP_OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    bytecode: BytecodeLocation
    metadata: _containers.ScalarMap[str, str]
    global_data: _containers.ScalarMap[str, bytes]
    uuid: str
    map_owner_id: int
    info: _containers.RepeatedCompositeFieldContainer[LoadInfo]
    def __init__(self, bytecode: _Optional[_Union[BytecodeLocation, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., global_data: _Optional[_Mapping[str, bytes]] = ..., uuid: _Optional[str] = ..., map_owner_id: _Optional[int] = ..., info: _Optional[_Iterable[_Union[LoadInfo, _Mapping]]] = ...) -> None: ...

class LoadInfo(_message.Message):
    __slots__ = ("name", "program_type", "info")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_TYPE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    program_type: BpfmanProgramType
    info: ProgSpecificInfo
    def __init__(self, name: _Optional[str] = ..., program_type: _Optional[_Union[BpfmanProgramType, str]] = ..., info: _Optional[_Union[ProgSpecificInfo, _Mapping]] = ...) -> None: ...

class FentryLoadInfo(_message.Message):
    __slots__ = ("fn_name",)
    FN_NAME_FIELD_NUMBER: _ClassVar[int]
    fn_name: str
    def __init__(self, fn_name: _Optional[str] = ...) -> None: ...

class FexitLoadInfo(_message.Message):
    __slots__ = ("fn_name",)
    FN_NAME_FIELD_NUMBER: _ClassVar[int]
    fn_name: str
    def __init__(self, fn_name: _Optional[str] = ...) -> None: ...

class ProgSpecificInfo(_message.Message):
    __slots__ = ("fentry_load_info", "fexit_load_info")
    FENTRY_LOAD_INFO_FIELD_NUMBER: _ClassVar[int]
    FEXIT_LOAD_INFO_FIELD_NUMBER: _ClassVar[int]
    fentry_load_info: FentryLoadInfo
    fexit_load_info: FexitLoadInfo
    def __init__(self, fentry_load_info: _Optional[_Union[FentryLoadInfo, _Mapping]] = ..., fexit_load_info: _Optional[_Union[FexitLoadInfo, _Mapping]] = ...) -> None: ...

class LoadResponseInfo(_message.Message):
    __slots__ = ("info", "kernel_info")
    INFO_FIELD_NUMBER: _ClassVar[int]
    KERNEL_INFO_FIELD_NUMBER: _ClassVar[int]
    info: ProgramInfo
    kernel_info: KernelProgramInfo
    def __init__(self, info: _Optional[_Union[ProgramInfo, _Mapping]] = ..., kernel_info: _Optional[_Union[KernelProgramInfo, _Mapping]] = ...) -> None: ...

class LoadResponse(_message.Message):
    __slots__ = ("programs",)
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    programs: _containers.RepeatedCompositeFieldContainer[LoadResponseInfo]
    def __init__(self, programs: _Optional[_Iterable[_Union[LoadResponseInfo, _Mapping]]] = ...) -> None: ...

class UnloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class UnloadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("id", "attach")
    ID_FIELD_NUMBER: _ClassVar[int]
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    id: int
    attach: AttachInfo
    def __init__(self, id: _Optional[int] = ..., attach: _Optional[_Union[AttachInfo, _Mapping]] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ("link_id",)
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    link_id: int
    def __init__(self, link_id: _Optional[int] = ...) -> None: ...

class DetachRequest(_message.Message):
    __slots__ = ("link_id",)
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    link_id: int
    def __init__(self, link_id: _Optional[int] = ...) -> None: ...

class DetachResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("program_type", "bpfman_programs_only", "match_metadata")
    class MatchMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROGRAM_TYPE_FIELD_NUMBER: _ClassVar[int]
    BPFMAN_PROGRAMS_ONLY_FIELD_NUMBER: _ClassVar[int]
    MATCH_METADATA_FIELD_NUMBER: _ClassVar[int]
    program_type: int
    bpfman_programs_only: bool
    match_metadata: _containers.ScalarMap[str, str]
    def __init__(self, program_type: _Optional[int] = ..., bpfman_programs_only: _Optional[bool] = ..., match_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("results",)
    class ListResult(_message.Message):
        __slots__ = ("info", "kernel_info")
        INFO_FIELD_NUMBER: _ClassVar[int]
        KERNEL_INFO_FIELD_NUMBER: _ClassVar[int]
        info: ProgramInfo
        kernel_info: KernelProgramInfo
        def __init__(self, info: _Optional[_Union[ProgramInfo, _Mapping]] = ..., kernel_info: _Optional[_Union[KernelProgramInfo, _Mapping]] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ListResponse.ListResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ListResponse.ListResult, _Mapping]]] = ...) -> None: ...

class PullBytecodeRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: BytecodeImage
    def __init__(self, image: _Optional[_Union[BytecodeImage, _Mapping]] = ...) -> None: ...

class PullBytecodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("info", "kernel_info")
    INFO_FIELD_NUMBER: _ClassVar[int]
    KERNEL_INFO_FIELD_NUMBER: _ClassVar[int]
    info: ProgramInfo
    kernel_info: KernelProgramInfo
    def __init__(self, info: _Optional[_Union[ProgramInfo, _Mapping]] = ..., kernel_info: _Optional[_Union[KernelProgramInfo, _Mapping]] = ...) -> None: ...
