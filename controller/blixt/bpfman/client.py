"""A small typed client for bpfman-rpc's bpfman.v1 gRPC API over a Unix socket.

Every call has a deadline. gRPC failures become BpfmanError naming the call
and carrying bpfman's own message. Only calls that are safe to repeat (List,
Get, PullBytecode) are retried, and only on transport-level codes: repeating
Load or Attach could load or attach twice.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Iterable, Mapping, Sequence

import grpc
import tenacity

from blixt.bpfman.v1 import bpfman_pb2 as pb
from blixt.bpfman.v1 import bpfman_pb2_grpc as pb_grpc

DEFAULT_SOCKET = "/run/bpfman-sock/bpfman.sock"
DEFAULT_TIMEOUT = 30.0

# bpfman's numbering of program types (BpfmanProgramType in the proto).
TC = pb.TC
TCX = pb.TCX
XDP = pb.XDP

# Image pull policies as bpfman numbers them.
PULL_ALWAYS = 0
PULL_IF_NOT_PRESENT = 1
PULL_NEVER = 2

# Codes worth a retry: the server is restarting or the socket briefly refused.
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE})


class BpfmanError(Exception):
    """A bpfman call failed. `call` names the RPC, `code` is the gRPC status."""

    def __init__(self, call: str, code: grpc.StatusCode | None, message: str):
        self.call = call
        self.code = code
        self.message = message
        code_name = code.name if code is not None else "NO_STATUS"
        super().__init__(f"bpfman {call} failed ({code_name}): {message}")


class BpfmanSocketMissing(BpfmanError):
    """The bpfman socket path does not exist or is not a socket."""

    def __init__(self, path: str, reason: str | None = None):
        self.path = path
        why = f" ({reason})" if reason else ""
        super().__init__(
            "connect",
            None,
            f"no bpfman socket at {path}{why}: is bpfman-rpc running with --socket-path={path}?",
        )


def default_pull_policy(ref: str) -> int:
    """Kubernetes' rule for imagePullPolicy: Always for `:latest` or no tag
    (the tag moves, so a cached copy may be stale), IfNotPresent otherwise."""
    if "@" in ref:
        return PULL_IF_NOT_PRESENT
    name = ref.rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else "latest"
    return PULL_ALWAYS if tag == "latest" else PULL_IF_NOT_PRESENT


@dataclasses.dataclass(frozen=True)
class Image:
    """Bytecode in an OCI image."""

    url: str
    pull_policy: int = PULL_IF_NOT_PRESENT
    username: str | None = None
    password: str | None = None

    def to_proto(self) -> pb.BytecodeImage:
        img = pb.BytecodeImage(url=self.url, image_pull_policy=self.pull_policy)
        if self.username is not None:
            img.username = self.username
        if self.password is not None:
            img.password = self.password
        return img


@dataclasses.dataclass(frozen=True)
class File:
    """Bytecode in an object file on the node (for development)."""

    path: str


Bytecode = Image | File


@dataclasses.dataclass(frozen=True)
class Program:
    """One program as bpfman reports it."""

    id: int
    name: str
    kernel_name: str
    kernel_type: int
    map_pin_path: str
    map_ids: tuple[int, ...]
    links: tuple[int, ...]
    metadata: Mapping[str, str]

    @classmethod
    def from_proto(cls, info: pb.ProgramInfo, kinfo: pb.KernelProgramInfo) -> "Program":
        return cls(
            id=kinfo.id,
            name=info.name,
            kernel_name=kinfo.name,
            kernel_type=kinfo.program_type,
            map_pin_path=info.map_pin_path,
            map_ids=tuple(kinfo.map_ids),
            links=tuple(info.links),
            metadata=dict(info.metadata),
        )


def _bytecode_location(bytecode: Bytecode) -> pb.BytecodeLocation:
    if isinstance(bytecode, Image):
        return pb.BytecodeLocation(image=bytecode.to_proto())
    if isinstance(bytecode, File):
        return pb.BytecodeLocation(file=bytecode.path)
    raise TypeError(f"bytecode must be Image or File, not {type(bytecode).__name__}")


class BpfmanClient:
    """Client for one bpfman-rpc socket. Use as a context manager or call close()."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        timeout: float = DEFAULT_TIMEOUT,
        retry_attempts: int = 5,
    ):
        try:
            mode = os.stat(socket_path).st_mode
        except FileNotFoundError:
            raise BpfmanSocketMissing(socket_path) from None
        except OSError as e:
            # A path through a file (ENOTDIR), a directory we may not search
            # (EACCES), a loop of links: no socket there either.
            raise BpfmanSocketMissing(socket_path, e.strerror) from None
        if not stat.S_ISSOCK(mode):
            raise BpfmanSocketMissing(socket_path, "not a socket")
        self.socket_path = socket_path
        self.timeout = timeout
        # bpfman-rpc (tonic/h2) resets streams whose :authority is the socket
        # path that gRPC derives from a unix: target; name a plain host instead.
        self._channel = grpc.insecure_channel(
            f"unix://{os.path.abspath(socket_path)}",
            options=[("grpc.default_authority", "localhost")],
        )
        self._stub = pb_grpc.BpfmanStub(self._channel)
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, BpfmanError) and e.code in _TRANSIENT
            ),
            stop=tenacity.stop_after_attempt(retry_attempts),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
            reraise=True,
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "BpfmanClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, name: str, request, timeout: float | None = None):
        method = getattr(self._stub, name)
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise BpfmanError(name, e.code(), e.details() or str(e)) from None

    def _call_idempotent(self, name: str, request, timeout: float | None = None):
        return self._retrying(self._call, name, request, timeout)

    def load(
        self,
        bytecode: Bytecode,
        programs: Sequence[tuple[str, int]],
        metadata: Mapping[str, str] | None = None,
        global_data: Mapping[str, bytes] | None = None,
        timeout: float | None = None,
    ) -> list[Program]:
        """Load programs (C function name, program type) from one object in one request.

        One request, because in bpfman 0.6.0 that is the only way programs share maps.
        """
        req = pb.LoadRequest(
            bytecode=_bytecode_location(bytecode),
            metadata=dict(metadata or {}),
            global_data=dict(global_data or {}),
            info=[pb.LoadInfo(name=n, program_type=t) for n, t in programs],
        )
        resp = self._call("Load", req, timeout)
        return [Program.from_proto(p.info, p.kernel_info) for p in resp.programs]

    def unload(self, program_id: int) -> None:
        self._call("Unload", pb.UnloadRequest(id=program_id))

    def attach_tc(
        self,
        program_id: int,
        iface: str,
        direction: str,
        priority: int = 50,
        netns: str | None = None,
        proceed_on: Iterable[int] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Attach a TC program behind bpfman's dispatcher; returns the link id."""
        info = pb.TCAttachInfo(
            priority=priority,
            iface=iface,
            direction=direction,
            proceed_on=list(proceed_on),
            metadata=dict(metadata or {}),
        )
        if netns is not None:
            info.netns = netns
        req = pb.AttachRequest(id=program_id, attach=pb.AttachInfo(tc_attach_info=info))
        return self._call("Attach", req).link_id

    def attach_tcx(
        self,
        program_id: int,
        iface: str,
        direction: str,
        priority: int = 50,
        netns: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Attach a TCX program; returns the link id. Priority must be set: 0 is not a default."""
        info = pb.TCXAttachInfo(
            priority=priority,
            iface=iface,
            direction=direction,
            metadata=dict(metadata or {}),
        )
        if netns is not None:
            info.netns = netns
        req = pb.AttachRequest(id=program_id, attach=pb.AttachInfo(tcx_attach_info=info))
        return self._call("Attach", req).link_id

    def detach(self, link_id: int) -> None:
        self._call("Detach", pb.DetachRequest(link_id=link_id))

    def list(
        self,
        program_type: int | None = None,
        match_metadata: Mapping[str, str] | None = None,
        bpfman_programs_only: bool = True,
    ) -> list[Program]:
        req = pb.ListRequest(
            match_metadata=dict(match_metadata or {}),
            bpfman_programs_only=bpfman_programs_only,
        )
        if program_type is not None:
            req.program_type = program_type
        resp = self._call_idempotent("List", req)
        return [Program.from_proto(r.info, r.kernel_info) for r in resp.results]

    def get(self, program_id: int) -> Program:
        resp = self._call_idempotent("Get", pb.GetRequest(id=program_id))
        return Program.from_proto(resp.info, resp.kernel_info)

    def pull_bytecode(self, image: Image, timeout: float | None = None) -> None:
        self._call_idempotent("PullBytecode", pb.PullBytecodeRequest(image=image.to_proto()), timeout)
