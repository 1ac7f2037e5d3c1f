import subprocess
import sys

import pytest

from blixt import cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "blixt", *args], capture_output=True, text=True)


def test_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0
    for command in ("controller", "agent", "bpfman-programs", "dataplane"):
        assert command in res.stdout
    assert "layer-4 load balancer" in res.stdout


def test_no_command_is_a_usage_error():
    res = run_cli()
    assert res.returncode == 2
    assert "COMMAND" in res.stderr


def test_agent_requires_node():
    res = run_cli("agent")
    assert res.returncode == 2
    assert "--node" in res.stderr


def test_controller_names_a_missing_kubeconfig(tmp_path):
    missing = tmp_path / "nope.kubeconfig"
    res = run_cli("controller", "--kubeconfig", str(missing), "--apiserver-timeout", "1")
    assert res.returncode == 1
    assert str(missing) in res.stderr


def test_agent_requires_bytecode_and_interface():
    res = run_cli("agent", "--node", "n1")
    assert res.returncode == 2
    assert "--bytecode-image" in res.stderr or "--interface" in res.stderr


def test_agent_names_missing_bpfman_socket(tmp_path):
    sock = tmp_path / "bpfman.sock"
    res = run_cli("agent", "--node", "n1", "--bytecode-file", "x.o", "--interface", "eth0",
                  "--bpfman-socket", str(sock))
    assert res.returncode == 1
    assert str(sock) in res.stderr


def test_agent_refuses_an_egress_attachment():
    """TC egress runs after netfilter's output and postrouting hooks: a mark
    set there could never steer NAT, so the option is not offered."""
    res = run_cli("agent", "--node", "n1", "--bytecode-file", "x.o", "--interface", "eth0/egress")
    assert res.returncode == 2
    assert "ingress only" in res.stderr


def test_agent_rejects_overlapping_marks():
    res = run_cli("agent", "--node", "n1", "--bytecode-file", "x.o", "--interface", "eth0",
                  "--mark-masquerade", "0x10000")
    assert res.returncode == 2
    assert "overlap" in res.stderr


def test_bpfman_programs_names_missing_socket(tmp_path):
    sock = tmp_path / "nope.sock"
    res = run_cli("bpfman-programs", "--bpfman-socket", str(sock))
    assert res.returncode == 1
    assert str(sock) in res.stderr


def test_match_requires_key_value():
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["bpfman-programs", "--match", "novalue"])
    assert exc.value.code == 2


def test_dataplane_show_requires_node():
    res = run_cli("dataplane", "show")
    assert res.returncode == 2
    assert "--node" in res.stderr


def test_dataplane_show_names_missing_socket(tmp_path):
    sock = tmp_path / "nope.sock"
    res = run_cli("dataplane", "show", "--node", "n1", "--bpfman-socket", str(sock))
    assert res.returncode == 1
    assert str(sock) in res.stderr


def test_dataplane_show_rejects_a_bad_table_name():
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["dataplane", "show", "--node", "n1", "--nft-table", "no spaces"])
    assert exc.value.code == 2
