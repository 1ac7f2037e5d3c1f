"""`blixt agent --maps-dir`: the agent of a bpfman-operator environment, which
never talks to bpfman. Real kernel, bpfman-rpc, kube-apiserver and netns
pods; the operator's part is played by the test through the same real
parts, doing what bpfman-operator v0.6.0 does for a ClusterBpfApplication
(its source: controllers/bpfman-agent): ask bpfman-rpc to load the bytecode
image with the globalData and attach the TCX link, pin the program's maps
into a fresh bpffs for the pod's CSI volume, and write the node's
ClusterBpfApplicationState (bpfman-operator's own CRD). The deployment with
the operator itself is the cluster tier's."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

import pytest

from blixt.bpfman import client as bpfman
from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig
from blixt.node import bpf
from blixt.node.manager import remove
from harness import bpftest, paths
from harness.blixt import running
from harness.scenario import Scenario

pytestmark = [pytest.mark.kube, pytest.mark.bpfman, pytest.mark.netns]

APP = "blixt"
STATE_CRD = paths.CACHE / "cluster" / "bpfman-operator" / "config" / "crd" / "bases" / \
    "bpfman.io_clusterbpfapplicationstates.yaml"


class Operator:
    """What bpfman-operator's agent does on this node for ClusterBpfApplication APP."""

    def __init__(self, node, client: bpfman.BpfmanClient, image: str, workdir: pathlib.Path):
        self.node, self.client, self.image, self.workdir = node, client, image, workdir
        self.program: bpfman.Program | None = None
        self.link = 0
        self.mounts: list[pathlib.Path] = []

    def load(self, marks: MarkConfig = MarkConfig()) -> bpfman.Program:
        (self.program,) = self.client.load(
            bpfman.Image(self.image, pull_policy=bpfman.default_pull_policy(self.image)), [("blixt_tcx", bpfman.TCX)],
            metadata={"bpfman.io/ProgramName": APP}, global_data={"blixt_cfg": bytes(marks.config())})
        self.link = self.client.attach_tcx(self.program.id, "eth-client", "ingress", priority=50,
                                           netns=f"/var/run/netns/{self.node.topo.node.netns}")
        return self.program

    def unload(self) -> None:
        for link in self.client.get(self.program.id).links:
            self.client.detach(link)
        self.client.unload(self.program.id)

    def csi_volume(self, name: str) -> pathlib.Path:
        """The maps re-pinned into a bpffs of their own, as the CSI driver does for a pod."""
        d = self.workdir / name
        d.mkdir(parents=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", str(d)], check=True)
        self.mounts.append(d)
        for map_name in layout.MAPS:
            fd = bpf.obj_get(os.path.join(self.program.map_pin_path, map_name))
            try:
                bpftest.pin(fd, d / map_name)
            finally:
                os.close(fd)
        return d

    def write_state(self, kube, link_status: str = "Attached") -> None:
        name = f"{APP}-{self.node.name}"
        kube.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "bpfman.io/v1alpha1", "kind": "ClusterBpfApplicationState",
            "metadata": {"name": name, "labels": {"bpfman.io/ownedByProgram": APP,
                                                  "kubernetes.io/hostname": self.node.name}}}))
        status = {"updateCount": 1, "node": self.node.name, "appLoadStatus": "LoadSuccess", "programs": [{
            "name": "blixt_tcx", "type": "TCX", "programLinkStatus": "Success", "programId": self.program.id,
            "tcx": {"links": [{"shouldAttach": True, "uuid": "u1", "linkId": self.link, "linkStatus": link_status,
                               "interfaceName": "eth-client", "direction": "Ingress", "priority": 50,
                               "netnsPath": f"/var/run/netns/{self.node.topo.node.netns}"}]}}]}
        kube.kubectl("patch", "clusterbpfapplicationstate", name, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))

    def close(self) -> None:
        for d in self.mounts:
            subprocess.run(["umount", str(d)], check=False)


@pytest.fixture
def operator_node(kube, bpfman_server, bytecode_image, workdir):
    paths.require_file(STATE_CRD, "bpfman-operator's CRDs (make deps-cluster)")
    kube.kubectl("apply", "-f", str(STATE_CRD))
    kube.kubectl("wait", "--for=condition=Established", "crd/clusterbpfapplicationstates.bpfman.io",
                 "--timeout=30s")
    with running(kube, bpfman_server.socket, bytecode_image, workdir / "e2e-operator-mode", name="op-node") as node:
        # Nothing of the agent's own loading: the "operator" loads from here on.
        node.stop_agent()
        with bpfman_server.client() as c:
            remove(c, node.name, node.topo.node.netns)
            op = Operator(node, c, bytecode_image, workdir / "operator-mode-csi")
            try:
                yield node, op
            finally:
                node.stop_agent()
                if op.program is not None:
                    for p in c.list(match_metadata={"bpfman.io/ProgramName": APP}):
                        for link in c.get(p.id).links:
                            c.detach(link)
                        c.unload(p.id)
                op.close()
                kube.kubectl("delete", "clusterbpfapplicationstates", "--all", "--wait=false", check=False)


def test_maps_dir_agent_programs_the_operators_program_and_detects_stale_pins(operator_node, kube):
    node, op = operator_node
    op.load()
    volume = op.csi_volume("pod-1")
    # Not ready before the operator's state says loaded and attached.
    node.start_agent_with(f"--maps-dir={volume}", wait=False)
    time.sleep(3)
    assert node.agent.alive() and not node.agent_ready()
    assert "no ClusterBpfApplicationState for ClusterBpfApplication blixt" in node.agent.log.read_text()
    op.write_state(kube, link_status="NotAttached")
    time.sleep(2)
    assert not node.agent_ready()
    op.write_state(kube)
    node.wait_for("the --maps-dir agent ready", node.agent_ready, timeout=30)

    sc = Scenario(node, "opmode")
    ns, addr = sc.serving_gateway(pods=(0, 1), protocols=("TCP", "UDP"))

    # The ClusterBpfApplication recreated: a new program with new maps; the
    # pod's volume still holds the old ones.
    op.unload()
    first = op.program.id
    op.load()
    op.write_state(kube)
    node.wait_for("the agent not ready on stale pins", lambda: not node.agent_ready(), timeout=30)
    log = node.agent.log.read_text()
    assert f"are not program {op.program.id}'s" in log and "delete this pod" in log, log[-2000:]
    assert op.program.id != first

    # The pod replaced: a new volume with the new program's maps.
    node.stop_agent()
    node.start_agent_with(f"--maps-dir={op.csi_volume('pod-2')}")
    sc.wait_traffic("TCP", addr, 9000, {"pod0", "pod1"})
    sc.wait_traffic("UDP", addr, 9000, {"pod0", "pod1"})


def test_maps_dir_agent_refuses_mark_flags_the_loaded_program_disagrees_with(operator_node, kube):
    node, op = operator_node
    op.load()  # the default layout in globalData
    op.write_state(kube)
    agent = node.start_agent_with(f"--maps-dir={op.csi_volume('pod-marks')}", "--mark-id-shift=16",
                                  "--mark-id-mask=0x00ff0000", wait=False)
    assert agent.popen.wait(timeout=60) == 1
    log = agent.log.read_text()
    assert "id mask 0xffff0000" in log and "0xff0000" in log and "globalData blixt_cfg: EAAAAAAA/wAAEAAAACAAAA==" in log, \
        log[-2000:]


def test_maps_dir_that_is_not_blixts_maps_is_refused_in_one_line(operator_node, workdir):
    node, _ = operator_node
    empty = workdir / "not-a-csi-volume"
    empty.mkdir()
    agent = node.start_agent_with(f"--maps-dir={empty}", wait=False)
    assert agent.popen.wait(timeout=60) == 1
    assert "no map blixt_services pinned there" in agent.log.read_text()
