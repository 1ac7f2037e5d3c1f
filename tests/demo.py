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
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness import paths  # noqa: E402
from harness.blixt import Node  # noqa: E402
from harness.bpfman import BpfmanServer  # noqa: E402
from harness.kube import Cluster  # noqa: E402
from harness.pki import CA  # noqa: E402
from harness.proc import run  # noqa: E402
from harness.registry import Registry  # noqa: E402

from blixt import oci_image  # noqa: E402
from blixt.bytecode_image import image_for  # noqa: E402


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6, help="requests per protocol (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args()
    stack = []
    with tempfile.TemporaryDirectory(prefix="blixt-demo-") as tmp:
        work = pathlib.Path(tmp)
        try:
            say("compiling the TC programs")
            run(["make", "-s", "-C", str(paths.REPO), "bytecode"])
            say("starting a TLS OCI registry and pushing the bytecode image")
            ca = CA(work / "pki")
            registry = Registry(work / "registry", ca)
            stack.append(registry.stop)
            ref = registry.ref("blixt/bytecode", "demo")
            digest = oci_image.push(image_for(paths.BYTECODE_OBJECT), ref, cafile=str(ca.cert))
            print(f"    {ref}@{digest}")
            say("starting bpfman-rpc")
            bpfman = BpfmanServer(work / "bpfman", ssl_cert_file=ca.bundle_with_system(work / "ca-bundle.crt"))
            stack.append(bpfman.stop)
            say("starting etcd and kube-apiserver with the Gateway API CRDs")
            cluster = Cluster(work / "kube")
            stack.append(cluster.stop)
            print(f"    kubectl --kubeconfig={cluster.kubeconfig}")
            say("creating the node namespace and three pods with echo servers")
            node = Node(work / "node", cluster, bpfman.socket, ref)
            node.workdir.mkdir(parents=True, exist_ok=True)

            def unload():  # the agent leaves its programs loaded on exit, by design
                with bpfman.client() as c:
                    for p in c.list(match_metadata={"blixt.io/node": node.name}):
                        c.unload(p.id)
            stack.append(unload)
            stack.append(node.close)
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
            if args.keep:
                say("running; press Ctrl-C to stop")
                import threading
                threading.Event().wait()
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            say("tearing down")
            for stop in reversed(stack):
                try:
                    stop()
                except Exception as e:  # keep tearing down the rest
                    print(f"    teardown: {e}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
