"""The two dataplanes of the killed-apply test (test_faults.py), and the
child process that applies the second one until it is SIGKILLed:

    python killed_apply.py SOCKET IMAGE NETNS NODE N [STOP_AT]

prints "applying" just before Manager.apply, "write N" as each of the
apply's writes (a map batch, an nft script, a netlink batch) is about to
start, and "applied" after it. With STOP_AT it stops itself (SIGSTOP) just
before write STOP_AT, for the test to kill it there: a kill timed from
outside came after the end of the apply, once writes took microseconds (this
machine's speed also varies threefold from one minute to the next)."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from blixt.bpfman import client as bc  # noqa: E402
from blixt.dataplane.model import Backend, Dataplane, Service  # noqa: E402
from blixt.node import bpf, nft  # noqa: E402
from blixt.node.manager import Attachment, Manager, Settings  # noqa: E402

BASE = int(ipaddress.IPv4Address("10.100.0.0"))


def frontend(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(BASE + i)


def backends(i: int, generation: int) -> tuple[Backend, ...]:
    """Three backends per frontend; the second generation moves two of them."""
    pods = [f"10.244.{(i * 3 + k) // 250}.{(i * 3 + k) % 250 + 2}" for k in range(3)]
    if generation == 2:
        pods[1] = f"10.245.{i // 250}.{i % 250 + 2}"
        pods[2] = f"10.246.{i // 250}.{i % 250 + 2}"
    return tuple(Backend(p, 8080) for p in pods)


def old(n: int) -> Dataplane:
    """n frontends (TCP :80), three backends each."""
    return Dataplane.of(Service(frontend(i), 80, "tcp", backends(i, 1)) for i in range(n))


def new(n: int) -> Dataplane:
    """A tenth of the frontends gone, as many new ones, the rest with two
    backends replaced: an apply that writes and deletes in every map."""
    kept = [Service(frontend(i), 80, "tcp", backends(i, 2)) for i in range(n // 10, n)]
    added = [Service(frontend(n + i), 80, "tcp", backends(n + i, 1)) for i in range(n // 10)]
    return Dataplane.of(kept + added)


def manager(socket: str, image: str, netns: str, node: str) -> Manager:
    mgr = Manager(bc.BpfmanClient(socket), Settings(node=node, bytecode=bc.Image(image),
                                                     attachments=(Attachment("eth-client"),), mode="tcx",
                                                     netns=netns))
    mgr.ensure_loaded()
    return mgr


def announce_writes(stop_at: int = 0) -> None:
    """Print "write N" before each non-empty write the process makes; stop
    before write `stop_at`."""
    count = 0

    def announced(method, size):
        def wrapper(self, *args, **kwargs):
            nonlocal count
            if size(*args):
                count += 1
                print(f"write {count}", flush=True)
                if count == stop_at:
                    os.kill(os.getpid(), signal.SIGSTOP)
            return method(self, *args, **kwargs)
        return wrapper

    bpf.PinnedMap.update_batch = announced(bpf.PinnedMap.update_batch, lambda keys, *_: len(keys))
    bpf.PinnedMap.delete_batch = announced(bpf.PinnedMap.delete_batch, lambda keys, *_: len(keys))
    nft.NatTable._run = announced(nft.NatTable._run, lambda lines: True)
    nft.nftnl.Link.send = announced(nft.nftnl.Link.send, lambda batch: len(batch))


def main(argv: list[str]) -> None:
    socket, image, netns, node, n, *stop_at = argv
    mgr = manager(socket, image, netns, node)
    desired = new(int(n))
    announce_writes(int(stop_at[0]) if stop_at else 0)
    print("applying", flush=True)
    mgr.apply(desired)
    print("applied", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
