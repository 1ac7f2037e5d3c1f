"""`make demo`: the whole of blixt on one machine, then traffic through it.

Starts a real etcd + kube-apiserver (with the Gateway API CRDs), a TLS OCI
registry holding blixt's bytecode image, bpfman-rpc, and a node network
namespace with three "pods" running echo servers; runs `blixt controller`
and `blixt agent`; applies samples/; writes the EndpointSlice an endpoint
controller would; then sends TCP and UDP through the Gateway and prints
which backend answered each request. Everything is torn down at the end
(or on Ctrl-C); --keep waits for Ctrl-C first so you can look around.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness import paths  # noqa: E402
from harness.stack import local_stack  # noqa: E402


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6, help="requests per protocol (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="blixt-demo-") as tmp:
        try:
            with local_stack(pathlib.Path(tmp), say) as node:
                return demo(node, args)
        except KeyboardInterrupt:
            return 0
        finally:
            say("torn down")


def demo(node, args) -> int:
    say("starting blixt controller and blixt agent")
    node.start_controller()
    node.start_agent()
    print(f"    logs: {node.controller.log}, {node.agent.log}")
    say("applying samples/")
    for f in sorted((paths.REPO / "samples").glob("*.yaml")):
        print(f"    {f.relative_to(paths.REPO)}")
        node.apply(f)
    node.write_endpoints("default", "echo", pods=[0, 1, 2])
    addr = node.gateway_address("default", "demo")
    say(f"Gateway default/demo is Programmed at {addr}")
    for proto, port in (("tcp", 8080), ("udp", 8081)):
        node.wait_for(f"{proto} through the Gateway", lambda: not node.client(
            proto, addr, port, "--count", 3, "--timeout", 1)["errors"], timeout=30)
        res = node.client(proto, addr, port, "--count", args.requests)
        say(f"{proto.upper()} {addr}:{port} from the client namespace {node.topo.client.address}")
        for i, answer in enumerate(res["answers"], 1):
            pod, peer = answer.split()[:2]
            print(f"    request {i}: answered by {pod} ({node.topo.pods[int(pod[3:])].address}), "
                  f"which saw the client as {peer}")
        for err in res["errors"]:
            print(f"    error: {err}")
    conntrack = node.topo.node.exec("conntrack", "-L", check=False).stdout
    say("conntrack in the node namespace (DNAT reply tuples)")
    for line in [l for l in conntrack.splitlines() if addr in l][:4]:
        print(f"    {line}")
    say(f"blixt dataplane show --node {node.name} --netns {node.topo.node.netns}")
    shown = subprocess.run([sys.executable, "-m", "blixt", "dataplane", "show", "--node", node.name,
                            "--netns", node.topo.node.netns, "--bpfman-socket", str(node.bpfman_socket)],
                           capture_output=True, text=True)
    for line in (shown.stdout or shown.stderr).splitlines():
        print(f"    {line}")
    if args.keep:
        say("running; press Ctrl-C to stop")
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
