"""Sockets in another network namespace, from a process that stays in its
own: setns(2) moves only the calling thread, and a socket keeps the
namespace it was made in. The agent serves health checks on the node's
addresses this way when it manages a namespace by name (--netns)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket

CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def entered(netns: str | None):
    """This thread in `ip netns` namespace netns meanwhile (None: stay)."""
    if netns is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into network namespace {netns}")
            try:
                yield
            finally:
                if libc.setns(home, CLONE_NEWNET) != 0:  # a thread left elsewhere would be a silent bug
                    raise OSError(ctypes.get_errno(), "setns back to our own network namespace")
        finally:
            os.close(target)
    finally:
        os.close(home)


def listen(netns: str | None, host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port inside netns."""
    with entered(netns):
        return socket.create_server((host, port), reuse_port=False)
