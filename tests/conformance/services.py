"""Run Kubernetes' own `[sig-network] Services` e2e tests (k8s.io/kubernetes
test/e2e, the cluster's release) on a one-node cluster whose only Service
proxy is blixt, or kube-proxy for comparison, and print a table of every
selected test: passed, failed, or skipped with the reason.

    python3 tests/conformance/services.py [--proxy blixt] [--proxy kube-proxy]

For each --proxy (default: blixt) it starts a fresh cluster of its own
(tests/harness/node.py: proxy="blixt" has no kube-proxy and applies
deploy/kustomize/overlays/service-proxy), runs the e2e binary (`make
deps-cluster`) in the client network namespace with kubectl beside it,
keeps its JUnit report in OUT/<proxy>/junit_01.xml with the log, and tears
the cluster down. No other cluster may be running (`make cluster-down`).

The selection: every spec whose name holds `[sig-network] Services `, the
[Conformance] ones and the others; none is skipped by us. Tests that need
more nodes, or a component running as a pod they can delete, skip
themselves at run time; the table shows the reason they give.

Exit status 0 only if no selected test failed with any proxy and every
[Conformance] test passed with blixt.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from harness import node, paths  # noqa: E402

E2E = paths.CLUSTER_BIN / "e2e.test"
OVERLAY = paths.REPO / "deploy" / "kustomize" / "overlays" / "service-proxy"
FOCUS = r"\[sig-network\] Services "
PREFIX = "[sig-network] Services "

@dataclasses.dataclass
class Result:
    status: str  # passed, failed, skipped
    seconds: float
    message: str = ""


def short(name: str) -> str:
    """'[It] [sig-network] Services should ...' -> 'should ...'."""
    name = re.sub(r"^\[It\] ", "", name)
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def parse_junit(path: pathlib.Path, focus: str = FOCUS) -> dict[str, Result]:
    """The specs of an e2e JUnit report that the focus selected, by short
    name (the report lists the others too, as skipped)."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if PREFIX not in name or not re.search(focus, name):
            continue
        status = case.get("status", "")
        message = ""
        failure = case.find("failure")
        skipped = case.find("skipped")
        if failure is not None:
            status = "failed"
            message = (failure.get("message") or failure.text or "").strip()
        elif skipped is not None:
            status = "skipped"
            message = (skipped.get("message") or "").strip()
        elif status not in ("passed", "failed", "skipped"):
            status = "failed" if status else "passed"
        out[short(name)] = Result(status, float(case.get("time") or 0), message)
    return out


def skip_reason(result: Result) -> str:
    """Why a skipped test was not run, as the test says."""
    msg = re.sub(r"^skipped\s*-?\s*", "", result.message)
    # The e2e framework's own skip messages carry the file and line first.
    msg = re.sub(r"^\[?SKIPPED\]?\s*", "", msg)
    return msg.splitlines()[0] if msg else "skipped"


def first_line(text: str) -> str:
    """The first line of a failure that is not a bracketed tag such as [FAILED]."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("["):
            return line[:160]
    return text.strip().splitlines()[0][:160] if text.strip() else ""


def run_e2e(cluster: node.NodeCluster, outdir: pathlib.Path, timeout: str, focus: str = FOCUS) -> dict[str, Result]:
    """The e2e binary's specs matching focus against the cluster."""
    binary = paths.require_file(E2E, "Kubernetes' e2e test binary (make deps-cluster)")
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("junit_*.xml"):
        old.unlink()
    argv = [
        "ip", "netns", "exec", cluster.client_ns, str(binary),
        f"--kubeconfig={cluster.kubeconfig}", f"--kubectl-path={paths.KUBECTL}",
        f"--report-dir={outdir}", f"--ginkgo.focus={focus}", f"--ginkgo.timeout={timeout}",
        "--ginkgo.no-color", "--ginkgo.v",
        # The one node is the control plane's too; nothing else needs waiting for.
        "--allowed-not-ready-nodes=0", "--system-pods-startup-timeout=5m",
    ]
    log_path = outdir / "e2e.log"
    print(f"  e2e: {' '.join(argv[4:])}\n  log: {log_path}", flush=True)
    with open(log_path, "w") as log:
        rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=outdir).returncode
    junit = outdir / "junit_01.xml"
    if not junit.exists():
        raise SystemExit(f"the e2e binary (exit {rc}) wrote no JUnit report; see {log_path}")
    results = parse_junit(junit, focus)
    if not results:
        raise SystemExit(f"no [sig-network] Services tests in {junit}; see {log_path}")
    return results


def run_with(proxy: str, outdir: pathlib.Path, workdir: pathlib.Path, timeout: str) -> dict[str, Result]:
    """A fresh cluster with this proxy, the e2e run, the teardown."""
    print(f"{proxy}: starting a one-node cluster in {workdir}", flush=True)
    start = time.monotonic()
    cluster = node.NodeCluster(workdir, netns_prefix="bsvc", proxy=proxy)
    try:
        if proxy == "blixt":
            node.Deployed(cluster, OVERLAY)
        # Every Service of the cluster served before the suite starts: the
        # suite waits for kube-system's pods (CoreDNS through the proxy).
        cluster.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=180s")
        print(f"{proxy}: cluster ready in {time.monotonic() - start:.0f}s", flush=True)
        return run_e2e(cluster, outdir / proxy, timeout)
    finally:
        for name in ("kubelet", "containerd"):
            log = workdir / f"{name}.log"
            if log.exists():
                (outdir / proxy).mkdir(parents=True, exist_ok=True)
                (outdir / proxy / f"{name}.log").write_bytes(log.read_bytes()[-2_000_000:])
        problems = node.teardown(workdir)
        for p in problems:
            print(f"{proxy}: teardown left {p}", file=sys.stderr)


def table(runs: dict[str, dict[str, Result]]) -> str:
    proxies = list(runs)
    names = sorted({n for r in runs.values() for n in r})
    width = min(max(len(n) for n in names), 110)
    head = f"{'[sig-network] Services test (Kubernetes e2e)':{width}}  " + "  ".join(f"{p:>10}" for p in proxies)
    lines = [head + "  reason / failure"]
    order = {"failed": 0, "passed": 1, "skipped": 2}

    def key(n):
        first = runs[proxies[0]].get(n)
        return ("[Conformance]" not in n, order.get(first.status if first else "skipped", 3), n)

    for n in sorted(names, key=key):
        cells, notes = [], []
        for p in proxies:
            r = runs[p].get(n)
            cells.append(f"{(r.status if r else '-'):>10}")
            if r and r.status == "skipped":
                notes.append(skip_reason(r))
            elif r and r.status == "failed":
                notes.append(f"{p}: {first_line(r.message)}")
        label = n if len(n) <= width else n[:width - 1] + "…"
        note = notes[0] if len(set(notes)) == 1 else " | ".join(dict.fromkeys(notes))
        lines.append(f"{label:{width}}  " + "  ".join(cells) + (f"  {note}" if note else ""))
    for p in proxies:
        r = runs[p]
        counts = {s: sum(1 for x in r.values() if x.status == s) for s in order}
        conf = [x for n, x in r.items() if "[Conformance]" in n]
        lines.append(f"{p}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
                     f"of {len(r)}; [Conformance]: {sum(1 for x in conf if x.status == 'passed')} of "
                     f"{len(conf)} passed")
    return "\n".join(lines)


def verdict(runs: dict[str, dict[str, Result]]) -> list[str]:
    """What makes the run fail: any failed test, a [Conformance] test blixt did not pass."""
    bad = [f"{p}: {n} failed" for p, r in runs.items() for n, x in r.items() if x.status == "failed"]
    if "blixt" in runs:
        bad += [f"blixt: {n} {x.status}" for n, x in runs["blixt"].items()
                if "[Conformance]" in n and x.status == "skipped"]
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", action="append", choices=node.PROXIES,
                    help="who serves Services (repeat to compare; default: blixt)")
    ap.add_argument("--out", type=pathlib.Path, default=paths.BUILD / "conformance-services",
                    help="where the JUnit reports, logs and services.txt go (default: build/conformance-services)")
    ap.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/run/blixt-services"),
                    help="the clusters' state directory (default: /run/blixt-services)")
    ap.add_argument("--timeout", default="90m", help="the e2e run's ginkgo timeout per proxy (default: 90m)")
    a = ap.parse_args(argv)
    proxies = a.proxy or ["blixt"]
    out = a.out.resolve()
    paths.require_file(E2E, "Kubernetes' e2e test binary (make deps-cluster)")
    runs = {p: run_with(p, out, a.workdir, a.timeout) for p in proxies}
    text = table(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "services.txt").write_text(text + "\n")
    print(text)
    bad = verdict(runs)
    if bad:
        print("\nnot passed:\n  " + "\n  ".join(bad) + f"\n(JUnit and logs in {out})")
        return 1
    print(f"\nJUnit and logs in {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except paths.MissingComponent as e:
        raise SystemExit(str(e))
    except KeyboardInterrupt:
        raise SystemExit(130)
