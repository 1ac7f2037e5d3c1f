def test_ping_crosses_the_node(netns):
    topo = netns(pods=2)
    for pod in topo.pods:
        res = topo.client.exec("ping", "-c", "1", "-W", "2", pod.address, check=False)
        assert res.returncode == 0, f"client could not reach {pod.netns}: {res.stdout}{res.stderr}"


def test_pods_reach_each_other_only_through_the_node(netns):
    topo = netns(pods=2)
    assert topo.pods[0].exec("ping", "-c", "1", "-W", "2", topo.pods[1].address, check=False).returncode == 0
    topo.node.exec("sysctl", "-qw", "net.ipv4.ip_forward=0")
    res = topo.pods[0].exec("ping", "-c", "1", "-W", "1", topo.pods[1].address, check=False)
    assert res.returncode != 0, "traffic crossed the node with forwarding off"


def test_topology_is_removed_on_close(netns):
    import subprocess
    topo = netns(pods=1)
    names = list(topo.namespaces)
    topo.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in names:
        assert ns not in listed
