"""The `blixt` command line: one entry point, a subcommand per process role."""

from __future__ import annotations

import argparse
import json
import sys

from blixt import __version__
from blixt.bpfman import client as bpfman

DESCRIPTION = """\
blixt is a layer-4 load balancer for Kubernetes. It implements Gateway API
TCPRoute and UDPRoute and the Service API (ClusterIP, NodePort, LoadBalancer)
with TC eBPF programs that bpfman loads, and the kernel's conntrack and NAT.
"""

EPILOG = """\
Run `blixt COMMAND --help` for the options of one command.
Exit codes: 0 success, 1 runtime failure, 2 bad usage, 3 not implemented yet.
"""

EXIT_NOT_IMPLEMENTED = 3


def _not_implemented(what: str):
    def run(args: argparse.Namespace) -> int:
        print(f"blixt {what}: not implemented yet", file=sys.stderr)
        return EXIT_NOT_IMPLEMENTED

    return run


def _bpfman_programs(args: argparse.Namespace) -> int:
    """Print the programs bpfman has loaded, as JSON lines."""
    match = dict(kv.split("=", 1) for kv in args.match)
    try:
        with bpfman.BpfmanClient(args.bpfman_socket, timeout=args.timeout) as c:
            for p in c.list(match_metadata=match):
                print(json.dumps({
                    "id": p.id,
                    "name": p.name,
                    "kernel_type": p.kernel_type,
                    "map_pin_path": p.map_pin_path,
                    "links": list(p.links),
                    "metadata": dict(p.metadata),
                }))
    except bpfman.BpfmanError as e:
        print(f"blixt bpfman-programs: {e}", file=sys.stderr)
        return 1
    return 0


def _key_value(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blixt",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"blixt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ctl = sub.add_parser(
        "controller",
        help="watch Gateway API objects and write their status (leader-elected)",
        description="Watch GatewayClasses, Gateways, TCPRoutes and UDPRoutes and write their status.",
    )
    ctl.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config)")
    ctl.set_defaults(run=_not_implemented("controller"))

    agent = sub.add_parser(
        "agent",
        help="program this node's dataplane through bpfman (one per node)",
        description="Load blixt's TC programs through bpfman and keep the node's BPF maps in step.",
    )
    agent.add_argument("--node", required=True, help="name of the node this agent serves")
    agent.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config)")
    agent.add_argument("--bpfman-socket", default=bpfman.DEFAULT_SOCKET,
                       help="bpfman-rpc socket (default: %(default)s)")
    agent.set_defaults(run=_not_implemented("agent"))

    progs = sub.add_parser(
        "bpfman-programs",
        help="list the programs bpfman has loaded, as JSON lines",
        description="Ask bpfman-rpc for its loaded programs and print one JSON object per line.",
    )
    progs.add_argument("--bpfman-socket", default=bpfman.DEFAULT_SOCKET,
                       help="bpfman-rpc socket (default: %(default)s)")
    progs.add_argument("--match", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                       help="only programs whose metadata has KEY=VALUE (repeatable)")
    progs.add_argument("--timeout", type=float, default=bpfman.DEFAULT_TIMEOUT,
                       help="deadline for each call, seconds (default: %(default)s)")
    progs.set_defaults(run=_bpfman_programs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
