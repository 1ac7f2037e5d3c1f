"""Everything blixt needs on one machine, started in order and torn down in
reverse: a TLS registry holding the bytecode image, bpfman-rpc, etcd and
kube-apiserver, and a netns node with pods. Used by `make demo` and the
convergence benchmark."""

from __future__ import annotations

import contextlib
import pathlib
import sys
from typing import Callable, Iterator

from blixt import oci_image
from blixt.bytecode_image import image_for

from . import paths
from .blixt import Node
from .bpfman import BpfmanServer
from .kube import Cluster
from .pki import CA
from .proc import run
from .registry import Registry


@contextlib.contextmanager
def local_stack(work: pathlib.Path, say: Callable[[str], None] = lambda _: None,
                pod_net: str = "198.18", variants: tuple[str, ...] = ()) -> Iterator[Node]:
    """A Node whose controller and agent are not started yet (pods in
    {pod_net}.i.2, as harness.netns.Topology says). variants: other builds
    ("large") pushed too, their references in node.variant_images."""
    with contextlib.ExitStack() as stack:
        def later(fn):
            def quietly():
                try:
                    fn()
                except Exception as e:  # keep tearing down the rest
                    print(f"    teardown: {e}", file=sys.stderr)
            stack.callback(quietly)

        say("compiling the TC programs")
        run(["make", "-s", "-C", str(paths.REPO), "bytecode"])
        say("starting a TLS OCI registry and pushing the bytecode image")
        ca = CA(work / "pki")
        registry = Registry(work / "registry", ca)
        later(registry.stop)
        ref = registry.ref("blixt/bytecode", "local")
        digest = oci_image.push(image_for(paths.BYTECODE_OBJECT), ref, cafile=str(ca.cert))
        say(f"    {ref}@{digest}")
        variant_refs = {}
        for v in variants:
            variant_refs[v] = registry.ref("blixt/bytecode", v)
            oci_image.push(image_for(paths.variant_object(v)), variant_refs[v], cafile=str(ca.cert))
        say("starting bpfman-rpc")
        bpfman = BpfmanServer(work / "bpfman", ssl_cert_file=ca.bundle_with_system(work / "ca-bundle.crt"))
        later(bpfman.stop)
        say("starting etcd and kube-apiserver with the Gateway API CRDs")
        cluster = Cluster(work / "kube")
        later(cluster.stop)
        say(f"    kubectl --kubeconfig={cluster.kubeconfig}")
        say("creating the node namespace and three pods with echo servers")
        node = Node(work / "node", cluster, bpfman.socket, ref, pod_net=pod_net)
        node.variant_images.update(variant_refs)
        node.workdir.mkdir(parents=True, exist_ok=True)

        def unload():  # the agent leaves its programs loaded on exit, by design
            with bpfman.client() as c:
                for p in c.list(match_metadata={"blixt.io/node": node.name}):
                    c.unload(p.id)
        later(unload)
        later(node.close)
        yield node
