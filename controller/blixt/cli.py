"""The `blixt` command line: one entry point, a subcommand per process role."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading

from blixt import __version__
from blixt.bpfman import client as bpfman
from blixt.oneline import one_line

DESCRIPTION = """\
blixt is a layer-4 load balancer for Kubernetes. It implements Gateway API
GatewayClass, Gateway, TCPRoute and UDPRoute with TC eBPF programs that bpfman
loads, and the kernel's conntrack and NAT. With `agent --proxy-services` it
also serves Kubernetes Services (ClusterIP, NodePort, LoadBalancer,
externalIPs) as kube-proxy does, for traffic arriving on the interfaces it
attaches to and for the node's own traffic.
"""

EPILOG = """\
Run `blixt COMMAND --help` for the options of one command.
Exit codes: 0 success, 1 runtime failure, 2 bad usage.
"""

def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _connect_apiserver(args: argparse.Namespace):
    from blixt.kube import config
    api = config.load_client(args.kubeconfig)
    config.wait_for_apiserver(api, timeout=args.apiserver_timeout, log=logging.getLogger("blixt"))
    return api


def _serve_until_signal(name: str, process, ready, bind: str) -> int:
    """Run `process` (run/stop) with health and metrics until SIGTERM/SIGINT."""
    from blixt.kube.serve import Server
    try:
        server = Server(bind, ready=ready)
    except OSError as e:  # the port is taken, the host is not ours or does not resolve
        print(f"blixt {name}: --metrics-bind {bind}: {one_line(e.strerror or e)}", file=sys.stderr)
        return 1
    logging.getLogger("blixt").info("%s: health and metrics on port %d", name, server.port)
    done = threading.Event()

    def on_signal(signum, _frame):
        logging.getLogger("blixt").info("%s: %s received, stopping", name, signal.Signals(signum).name)
        done.set()
        process.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        process.run()
    finally:
        server.stop()
    return 0


def _run_controller(args: argparse.Namespace) -> int:
    from blixt.kube.config import ApiServerUnreachable, ConfigError
    from blixt.kube.leader import LeaderElector
    from blixt.kube.watch import Cache
    from blixt.processes import Controller
    _setup_logging(args.log_level)
    try:
        api = _connect_apiserver(args)
    except (ConfigError, ApiServerUnreachable) as e:
        print(f"blixt controller: {e}", file=sys.stderr)
        return 1
    cache = Cache(api, resync=args.resync).start()
    identity = args.identity or f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaderElector(api, args.lease_namespace, args.lease_name, identity)
    controller = Controller(api, cache, elector, controller_name=args.controller_name, resync=args.resync)
    try:
        return _serve_until_signal("controller", controller, controller.ready, args.metrics_bind)
    finally:
        cache.stop()


def _interface(text: str):
    from blixt.node.manager import Attachment
    if "/" in text:
        # TC egress runs after netfilter's output and postrouting hooks: a mark
        # set there could never steer NAT, so only ingress is offered.
        raise argparse.ArgumentTypeError(f"{text!r}: give an interface name; blixt attaches to ingress only")
    # The kernel's rule for a name (dev_valid_name): bpfman would otherwise
    # refuse it only once the program is loaded.
    if not text or len(text.encode()) > 15 or text in (".", "..") or any(c.isspace() or c == ":" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an interface name (1 to 15 bytes, no '/', "
                                         "':' or whitespace)")
    return Attachment(text)


class AddressesUnreadable(RuntimeError):
    """`ip addr` could not list the addresses (no such device or namespace,
    no `ip`); the message carries ip's own complaint."""


def _netns_addresses(netns: str | None, dev: str | None = None):
    """The namespace's (or one device's) global IPv4 addresses."""
    argv = ((["ip", "netns", "exec", netns] if netns else []) + ["ip", "-j", "-4", "addr", "show", "scope", "global"]
            + (["dev", dev] if dev else []))

    def read() -> frozenset:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        except subprocess.CalledProcessError as e:
            why = one_line(e.stderr) or f"exit {e.returncode}"
            raise AddressesUnreadable(f"`{' '.join(argv)}` failed: {why}") from e
        except OSError as e:
            raise AddressesUnreadable(f"cannot run {argv[0]}: {e.strerror or e}") from e
        return frozenset(ipaddress.IPv4Address(a["local"]) for link in json.loads(out) for a in link.get("addr_info", []))
    return read


def _cidrs(text: str) -> list[ipaddress.IPv4Network]:
    try:
        nets = [ipaddress.ip_network(t.strip(), strict=False) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if any(n.version != 4 for n in nets):
        raise argparse.ArgumentTypeError(f"{text!r}: only IPv4 CIDRs are supported")
    return nets


def _ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _service_proxy(args: argparse.Namespace, all_addresses):
    """(ProxyOptions or None, the addresses wildcard frontends match)."""
    from blixt.translate import nodeports
    from blixt.translate.proxy import ProxyOptions
    if not args.proxy_services:
        return None, all_addresses
    option = nodeports.parse(v for text in args.nodeport_addresses for v in text.split(","))
    node_ips = tuple(args.node_ip)
    if not node_ips:
        # The primary IPs default to those of the first interface attached.
        if not args.interface:
            raise ValueError("--node-ip is needed with --maps-dir and --proxy-services (the node's primary IPs "
                             "are otherwise those of the first --interface)")
        first = args.interface[0].iface
        node_ips = tuple(sorted(_netns_addresses(args.netns, first)()))
        logging.getLogger("blixt.agent").info("--node-ip not given; the node's primary IPs are %s's: %s",
                                              first, ", ".join(map(str, node_ips)) or "none")
    proxy = ProxyOptions(node=args.node, zone=args.zone, pod_cidrs=tuple(n for t in args.cluster_cidr for n in t),
                         masquerade_all=args.masquerade_all, node_ips=node_ips)
    return proxy, lambda: nodeports.addresses(option, all_addresses(), node_ips)


def _run_agent(args: argparse.Namespace) -> int:
    from blixt.node.manager import Manager, Settings
    from blixt.dataplane.marks import MarkConfig
    from blixt.kube.config import ApiServerUnreachable, ConfigError
    from blixt.kube.events import EventRecorder
    from blixt.node.bpf import BpfError
    from blixt.node.pinned_maps import PinnedMapsError
    from blixt.kube.watch import Cache
    from blixt.processes import Agent
    _setup_logging(args.log_level)
    if args.maps_dir:
        bytecode = None
        if args.interface or args.pod_interfaces:
            print("blixt agent: --interface and --pod-interfaces do not go with --maps-dir: the "
                  "ClusterBpfApplication's links say where bpfman-operator attaches the program", file=sys.stderr)
            return 2
    elif not args.interface:
        print("blixt agent: --interface is required (or --maps-dir)", file=sys.stderr)
        return 2
    elif args.bytecode_file:
        bytecode = bpfman.File(args.bytecode_file)
    else:
        bytecode = bpfman.Image(args.bytecode_image, pull_policy=bpfman.default_pull_policy(args.bytecode_image))
    if args.pod_interfaces and args.attach_mode != "tcx":
        print("blixt agent: --pod-interfaces needs --attach-mode tcx", file=sys.stderr)
        return 2
    try:
        marks = MarkConfig(args.mark_id_shift, args.mark_id_mask, args.mark_masquerade, args.mark_reject)
    except ValueError as e:
        print(f"blixt agent: --mark-id-shift/--mark-id-mask/--mark-masquerade/--mark-reject: {e}", file=sys.stderr)
        return 2
    try:
        proxy, local_addresses = _service_proxy(args, _netns_addresses(args.netns))
        settings = Settings(node=args.node, bytecode=bytecode, attachments=tuple(args.interface),
                            mode=args.attach_mode, netns=args.netns, marks=marks, priority=args.priority)
    except ValueError as e:
        print(f"blixt agent: {e}", file=sys.stderr)
        return 2
    except AddressesUnreadable as e:
        print(f"blixt agent: the node's primary IPs (--node-ip not given): {e}", file=sys.stderr)
        return 1
    client = operator = states = None
    try:
        if args.maps_dir:
            manager, operator, states, api = _pinned_maps_agent(args, settings)
        else:
            client = bpfman.BpfmanClient(args.bpfman_socket, timeout=args.bpfman_timeout)
            api = _connect_apiserver(args)
            manager = Manager(client, settings)
            manager.ensure_loaded()
    except bpfman.BpfmanError as e:
        _bpfman_failed("agent", e, args.bpfman_socket)
        return _closing(1, client, states)
    except (ConfigError, ApiServerUnreachable, PinnedMapsError, BpfError) as e:
        print(f"blixt agent: {one_line(e)}", file=sys.stderr)
        return _closing(1, client, states)
    pods = None
    if args.pod_interfaces:
        from blixt.node.pod_interfaces import PodInterfaces
        pods = PodInterfaces(manager, args.pod_interfaces)
        threading.Thread(target=pods.run, name="pod-interfaces", daemon=True).start()
    cache = Cache(api, resync=args.resync).start()
    if states is not None:
        states.add_listener(lambda *_: cache.changed.set())  # a state change may make the maps usable
    proxy_health = service_health = healthz = None
    if proxy is not None:
        from blixt.kube.serve import parse_bind
        from blixt.node.health_servers import ProxyHealth, ServiceHealth, serve_proxy_health
        proxy_health = ProxyHealth()
        try:
            healthz = serve_proxy_health(args.netns, parse_bind(args.healthz_bind), proxy_health)
        except (OSError, ValueError) as e:
            print(f"blixt agent: --healthz-bind {args.healthz_bind}: {e}", file=sys.stderr)
            cache.stop()
            return _closing(1, client, states)
        service_health = ServiceHealth(args.netns, local_addresses, proxy_health.healthy)
    agent = Agent(cache, manager, args.node, local_addresses=local_addresses,
                  controller_name=args.controller_name, resync=args.resync, proxy=proxy,
                  proxy_health=proxy_health, service_health=service_health,
                  events=EventRecorder(api, "blixt-agent", args.node), operator=operator)
    try:
        # Programs stay loaded on exit: a restarted agent adopts them, and
        # established flows never notice.
        ready = agent.ready if pods is None else lambda: agent.ready() and pods.synced.is_set()
        rc = _serve_until_signal("agent", agent, ready, args.metrics_bind)
        if agent.fatal:
            print(f"blixt agent: {agent.fatal}", file=sys.stderr)
            return 1
        return rc
    finally:
        if pods is not None:
            pods.stop()
        if healthz is not None:
            healthz.stop()
        cache.stop()
        _closing(0, client, states)


def _closing(rc: int, client, states) -> int:
    if client is not None:
        client.close()
    if states is not None:
        states.stop()
    return rc


def _pinned_maps_agent(args: argparse.Namespace, settings):
    """--maps-dir: the maps bpfman's CSI driver pinned, checked against this
    agent's layout, and the watch of the node's ClusterBpfApplicationState."""
    from blixt.kube.watch import Cache
    from blixt.node import pinned_maps
    from blixt.node.manager import Manager
    from blixt.node.operator_program import CLUSTER_BPF_APPLICATION_STATES, OperatorProgram
    maps = pinned_maps.open_dir(args.maps_dir)
    problems = pinned_maps.layout_problems(maps)
    if problems:
        for m in maps.values():
            m.close()
        raise pinned_maps.PinnedMapsError(f"--maps-dir {args.maps_dir}: the maps are not laid out as this agent "
                                          f"writes them: {'; '.join(problems)}")
    api = _connect_apiserver(args)
    states = Cache(api, [CLUSTER_BPF_APPLICATION_STATES], resync=args.resync).start()
    operator = OperatorProgram(states, maps, args.maps_dir, args.bpf_application, args.node, "blixt_tcx",
                               settings.marks)
    return Manager.over_pinned_maps(maps, settings), operator, states, api


def _bpfman_failed(command: str, e: bpfman.BpfmanError, socket_path: str) -> None:
    """One line; it names the socket, which gRPC's own messages (a deadline
    exceeded, a reset stream) do not."""
    text = one_line(e)
    if socket_path not in text:
        text += f" (bpfman socket {socket_path})"
    print(f"blixt {command}: {text}", file=sys.stderr)


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
        _bpfman_failed("bpfman-programs", e, args.bpfman_socket)
        return 1
    return 0


def _nft_table(text: str) -> str:
    from blixt.dataplane.marks import MarkConfig
    from blixt.node.nft import NatTable
    try:
        NatTable(None, MarkConfig(), name=text)  # NatTable owns the naming rule; no I/O here
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _dataplane_show(args: argparse.Namespace) -> int:
    from blixt.node import inspection
    from blixt.node.bpf import BpfError
    from blixt.node.nft import NftError
    try:
        with bpfman.BpfmanClient(args.bpfman_socket, timeout=args.timeout) as c:
            rep = inspection.read(c, args.node, args.netns, args.nft_table)
    except bpfman.BpfmanError as e:
        _bpfman_failed("dataplane show", e, args.bpfman_socket)
        return 1
    except (inspection.CannotShow, BpfError, NftError) as e:
        print(f"blixt dataplane show: {one_line(e)}", file=sys.stderr)
        return 1
    print(json.dumps(rep, indent=2) if args.json else inspection.format_text(rep))
    return 0


def _dataplane_remove(args: argparse.Namespace) -> int:
    from blixt.node import manager
    from blixt.node.nft import NftError
    try:
        with bpfman.BpfmanClient(args.bpfman_socket, timeout=args.timeout) as c:
            n = manager.remove(c, args.node, args.netns, args.nft_table)
    except bpfman.BpfmanError as e:
        _bpfman_failed("dataplane remove", e, args.bpfman_socket)
        return 1
    except NftError as e:
        print(f"blixt dataplane remove: {one_line(e)}", file=sys.stderr)
        return 1
    print(f"removed {n} program(s) and the nftables table {args.nft_table}")
    return 0


def _run_translate(args: argparse.Namespace) -> int:
    from blixt import offline
    return offline.run(args.file, node=args.node, controller_name=args.controller_name, json_output=args.json)


def _seconds(text: str, *, zero_ok: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds, "
                                         + ("0 or more" if zero_ok else "more than 0"))
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text)


def _nonnegative_seconds(text: str) -> float:
    return _seconds(text, zero_ok=True)


def _bind(text: str) -> str:
    """HOST:PORT checked at parse time: the servers bind only once the
    apiserver (and, for the agent, bpfman) answered, far from the mistake."""
    from blixt.kube.serve import parse_bind
    try:
        _, port = parse_bind(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port {port} is above 65535")
    return text


def _mark_int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (decimal, or 0x for hex)") from None


def _mark_shift(text: str) -> int:
    value = _mark_int(text)
    if not 0 <= value <= 31:
        raise argparse.ArgumentTypeError(f"{text!r}: a bit position in the 32-bit mark, 0..31")
    return value


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..1000")
    return value


def _nodeport_addresses(text: str) -> str:
    """Each value is `primary` or a CIDR; kept as text for nodeports.parse,
    which also checks the values together. Checked here so that a typo is
    refused even without --proxy-services."""
    from blixt.translate import nodeports
    for value in (v.strip() for v in text.split(",")):
        if value and value != nodeports.PRIMARY:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{value!r} is not a CIDR (or {nodeports.PRIMARY})") from None
    return text


def _key_value(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def _common(p: argparse.ArgumentParser) -> None:
    from blixt.translate import CONTROLLER_NAME
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account)")
    p.add_argument("--controller-name", default=CONTROLLER_NAME,
                   help="GatewayClass controllerName served (default: %(default)s)")
    p.add_argument("--metrics-bind", default="0.0.0.0:8080", metavar="HOST:PORT", type=_bind,
                   help="/healthz, /readyz and /metrics (default: %(default)s)")
    p.add_argument("--resync", type=_positive_seconds, default=300.0, help="full relist and reconcile period, seconds "
                   "(default: %(default)s)")
    p.add_argument("--apiserver-timeout", type=_nonnegative_seconds, default=120.0,
                   help="how long to keep retrying an unreachable API server at start before exiting 1, "
                        "seconds; 0 tries once (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


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
        description="Watch GatewayClasses, Gateways, TCPRoutes, UDPRoutes and what they refer to, "
                    "and write their status. Replicas elect a leader through a Lease; only it writes.",
    )
    _common(ctl)
    ctl.add_argument("--lease-namespace", default="blixt-system",
                     help="namespace of the leader-election Lease (default: %(default)s)")
    ctl.add_argument("--lease-name", default="blixt-controller",
                     help="name of the leader-election Lease (default: %(default)s)")
    ctl.add_argument("--identity", help="this replica's identity in the Lease (default: HOSTNAME-PID)")
    ctl.set_defaults(run=_run_controller, parser=ctl)

    agent = sub.add_parser(
        "agent",
        help="program this node's dataplane through bpfman (one per node)",
        description="Load blixt's TC programs through bpfman, attach them to the node's interfaces, "
                    "and keep the BPF maps and the nftables NAT table in step with the cluster. With "
                    "--maps-dir, bpfman-operator loads and attaches the program instead, and the agent keeps "
                    "the maps its CSI driver pinned in step.",
    )
    agent.add_argument("--node", required=True, help="name of the node this agent serves")
    _common(agent)
    agent.add_argument("--bpfman-socket", default=bpfman.DEFAULT_SOCKET,
                       help="bpfman-rpc socket (default: %(default)s)")
    agent.add_argument("--bpfman-timeout", type=_positive_seconds, default=60.0,
                       help="deadline for each bpfman call, seconds (default: %(default)s)")
    code = agent.add_mutually_exclusive_group(required=True)
    code.add_argument("--maps-dir", metavar="DIR",
                      help="bpfman-operator mode: the program is loaded and attached by bpfman-operator from a "
                           "ClusterBpfApplication; program the maps bpfman's CSI driver pinned in DIR, never "
                           "talking to bpfman (the agent is ready once the node's ClusterBpfApplicationState says "
                           "the program is loaded and attached and the maps are its own)")
    code.add_argument("--bytecode-image", metavar="REF",
                      help="OCI image with blixt's bytecode (HTTPS registry); pulled every load when its tag "
                           "is latest or absent, as Kubernetes pulls images")
    code.add_argument("--bytecode-file", metavar="PATH", help="object file on the node instead (development)")
    agent.add_argument("--interface", action="append", type=_interface, default=[], metavar="IFACE",
                       help="classify packets arriving on IFACE (TC ingress); repeatable; required unless "
                            "--maps-dir (then the ClusterBpfApplication's links say where)")
    agent.add_argument("--bpf-application", default="blixt", metavar="NAME",
                       help="with --maps-dir: the ClusterBpfApplication that loads blixt's program "
                            "(default: %(default)s)")
    agent.add_argument("--pod-interfaces", action="append", default=[], metavar="PREFIX",
                       help="also classify packets arriving on every interface whose name starts with PREFIX "
                            "(pods' host-side veths, e.g. veth), attaching as they appear; repeatable; tcx only")
    agent.add_argument("--attach-mode", choices=("tcx", "tc"), default="tcx",
                       help="TCX links, or legacy TC behind bpfman's dispatcher (default: %(default)s)")
    agent.add_argument("--netns", help="`ip netns` name of the node's network namespace (default: bpfman's own)")
    agent.add_argument("--priority", type=_priority, default=50, help="TC/TCX priority, 1..1000 (default: %(default)s)")
    from blixt.dataplane import layout
    marks = agent.add_argument_group("skb->mark layout (must not overlap bits others use)")
    marks.add_argument("--mark-id-shift", type=_mark_shift, default=layout.DEFAULT_ID_SHIFT,
                       help="(default: %(default)s)")
    for flag, default in (("--mark-id-mask", layout.DEFAULT_ID_MASK), ("--mark-masquerade", layout.DEFAULT_MASQ_MARK),
                          ("--mark-reject", layout.DEFAULT_REJECT_MARK)):
        marks.add_argument(flag, type=_mark_int, default=default, help=f"(default: {default:#x})")
    svc = agent.add_argument_group(
        "Kubernetes Services (kube-proxy's meaning; traffic arriving on the --interface devices, and the node's own)")
    svc.add_argument("--proxy-services", action="store_true",
                     help="serve Services' ClusterIPs, NodePorts, LoadBalancer IPs and externalIPs; "
                          "not alongside kube-proxy, which would serve them too")
    svc.add_argument("--cluster-cidr", action="append", default=[], type=_cidrs, metavar="CIDR[,CIDR]",
                     help="the pods' CIDRs: ClusterIP traffic from elsewhere is masqueraded, and pods reach "
                          "externalTrafficPolicy Local Services through any endpoint; repeatable")
    svc.add_argument("--masquerade-all", action="store_true", help="masquerade all traffic to ClusterIPs")
    svc.add_argument("--nodeport-addresses", action="append", default=[], metavar="primary|CIDR[,CIDR]",
                     type=_nodeport_addresses,
                     help="addresses that serve NodePorts: `primary` (the default) for the --node-ip "
                          "addresses, or the node's addresses in these CIDRs (0.0.0.0/0: all)")
    svc.add_argument("--node-ip", action="append", default=[], type=_ipv4, metavar="IP",
                     help="the node's primary IP (its InternalIP; repeatable; default: the first "
                          "--interface's addresses)")
    svc.add_argument("--zone", default="",
                     help="the node's zone (its topology.kubernetes.io/zone label), for EndpointSlice "
                          "zone hints; the agent does not read Node objects")
    svc.add_argument("--healthz-bind", default="0.0.0.0:10256", metavar="HOST:PORT", type=_bind,
                     help="the proxy's /healthz and /livez, in the node's namespace, as kube-proxy serves them; "
                          "healthCheckNodePorts are served on the NodePort addresses (default: %(default)s)")
    agent.set_defaults(run=_run_agent, parser=agent)

    progs = sub.add_parser(
        "bpfman-programs",
        help="list the programs bpfman has loaded, as JSON lines",
        description="Ask bpfman-rpc for its loaded programs and print one JSON object per line.",
    )
    progs.add_argument("--bpfman-socket", default=bpfman.DEFAULT_SOCKET,
                       help="bpfman-rpc socket (default: %(default)s)")
    progs.add_argument("--match", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                       help="only programs whose metadata has KEY=VALUE (repeatable)")
    progs.add_argument("--timeout", type=_positive_seconds, default=bpfman.DEFAULT_TIMEOUT,
                       help="deadline for each call, seconds (default: %(default)s)")
    progs.set_defaults(run=_bpfman_programs, parser=progs)

    dp = sub.add_parser(
        "dataplane",
        help="inspect this node's dataplane, or remove it",
        description="Read what the agent programmed on this node (show), or undo it (remove).",
    )
    dp_sub = dp.add_subparsers(dest="dataplane_command", metavar="COMMAND", required=True)
    show = dp_sub.add_parser(
        "show",
        help="the agent's programs, frontends, backends, counters and map fill levels",
        description="Find the programs the agent loaded for a node through bpfman, read their pinned "
                    "maps and the nftables backend map, and print: each program with its link ids; "
                    "each frontend (address:port/proto, *:port for wildcard entries) with its service id, "
                    "slot count, affinity timeout and counters summed over CPUs (packets, bytes, new "
                    "flows: TCP SYNs only); each backend with its address, weight (its slots in the "
                    "live table) and masquerade flag; and each map's entries, capacity and memlock bytes. "
                    "Nothing is loaded, attached or written. Needs root on the node.",
    )
    def node_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--node", required=True, help="node name the agent runs with (its --node)")
        p.add_argument("--netns", help="`ip netns` name the agent manages (its --netns; default: bpfman's own)")
        p.add_argument("--nft-table", default="blixt", type=_nft_table,
                       help="the agent's nftables table (default: %(default)s)")
        p.add_argument("--bpfman-socket", default=bpfman.DEFAULT_SOCKET,
                       help="bpfman-rpc socket (default: %(default)s)")
        p.add_argument("--timeout", type=_positive_seconds, default=bpfman.DEFAULT_TIMEOUT,
                       help="deadline for each bpfman call, seconds (default: %(default)s)")

    node_options(show)
    show.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    show.set_defaults(run=_dataplane_show, parser=show)
    rm = dp_sub.add_parser(
        "remove",
        help="detach and unload the agent's programs and delete its nftables table",
        description="Undo what the agent set up on this node: detach and unload the programs it loaded "
                    "through bpfman for this node and namespace, and delete its nftables table. Connections "
                    "already translated keep their conntrack entries until they end. Stop the agent first, "
                    "or it loads everything again. Needs root on the node.",
    )
    node_options(rm)
    rm.set_defaults(run=_dataplane_remove, parser=rm)

    from blixt.translate import CONTROLLER_NAME
    tr = sub.add_parser(
        "translate",
        help="show the statuses and dataplane blixt would produce for objects in files (no cluster)",
        description="Read Kubernetes objects (GatewayClass, Gateway, TCPRoute, UDPRoute, ReferenceGrant, "
                    "Service, EndpointSlice, Namespace, ConfigMap) from YAML or JSON files, run the "
                    "translation the controller and agent run, and print each object's status conditions "
                    "and the desired dataplane: frontends and their weighted backends. Other kinds are "
                    "skipped with a warning; a file without objects, or a document that is not a Kubernetes "
                    "object (neither kind nor apiVersion), exits 2. Nothing is read from or written to a cluster.",
    )
    tr.add_argument("-f", "--file", action="append", required=True, metavar="FILE",
                    help="YAML (multi-document) or JSON file, '-' for stdin; repeatable")
    tr.add_argument("--node", help="translate for this node: backends on it are not masqueraded "
                    "(default: none, every backend is masqueraded)")
    tr.add_argument("--controller-name", default=CONTROLLER_NAME,
                    help="GatewayClass controllerName served (default: %(default)s)")
    tr.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    tr.set_defaults(run=_run_translate, parser=tr)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # parse_args would report a subcommand's unknown flags from the top
        # parser, under blixt's own usage; the subcommand's parser names the
        # command and shows the flags it does take.
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.run(args)
