"""The test's private network: Linux network namespaces, a bridge, routes and queue rules.

One *hub* namespace holds a bridge; every node and the client get their own namespace,
joined to the bridge by a veth pair, with an address of SUBNET that exists only inside
these namespaces. Nothing is connected to the machine's own namespace, so the test's
traffic never leaves them. Every name starts with PREFIX + the run's pid, so two runs
cannot collide, and `remove_stale` can find what a crashed earlier run left behind.

Faults live inside the node namespaces:
- partitions are blackhole routes (both directions, one /32 per unreachable peer);
- delay and loss are an iptables-legacy NFQUEUE rule on the node's OUTPUT to its peers
  (never to the client), served by nfq.py; `--queue-bypass` makes it fail open when no
  program listens.
Deleting a namespace deletes its routes and rules with it.
"""

import os
import subprocess
import sys

PREFIX = "dhrtj"
SUBNET = "10.77.0"
CLIENT_HOST = 200
QUEUE_NUM = 7


def sh(*args, check=True, capture=False):
    """Runs a command (a list of strings); raises on failure when `check`."""
    res = subprocess.run(
        list(args),
        check=False,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout if capture else res.returncode


def list_netns():
    """Names of every network namespace on the machine."""
    out = sh("ip", "netns", "list", capture=True, check=False) or ""
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns):
    """Pids of the processes running in namespace `ns`."""
    out = sh("ip", "netns", "pids", ns, capture=True, check=False) or ""
    return [int(p) for p in out.split() if p.isdigit()]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def delete_namespace(ns):
    """Kills (SIGKILL, by pid) what runs in `ns`, then deletes it."""
    for pid in netns_pids(ns):
        if pid == os.getpid():
            continue  # the harness itself lives in the client namespace
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    sh("ip", "netns", "del", ns, check=False)


def remove_stale(log=print):
    """Removes the namespaces of earlier runs whose process is gone (a crashed run)."""
    for ns in list_netns():
        if not ns.startswith(PREFIX):
            continue
        owner = ns[len(PREFIX):].split("-")[0]
        if owner.isdigit() and not pid_alive(int(owner)) or owner == str(os.getpid()):
            log(f"removing stale namespace {ns}")
            delete_namespace(ns)


def can_use_namespaces():
    """None when this process can create namespaces, else why not."""
    if os.geteuid() != 0:
        return "not root: network namespaces need root"
    for tool in ("ip", "iptables-legacy"):
        if subprocess.run(["which", tool], stdout=subprocess.DEVNULL).returncode != 0:
            return f"{tool} is not installed (run bash scripts/setup.sh)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    if sh("ip", "netns", "add", probe, check=False) != 0:
        return "cannot create a network namespace here (ip netns add failed)"
    sh("ip", "netns", "del", probe, check=False)
    return None


class Network:
    """The namespaces of one run: `hub`, `client` and one per node (1-based)."""

    def __init__(self, nodes, log=print):
        self.n = nodes
        self.log = log
        self.tag = f"{PREFIX}{os.getpid()}"
        self.hub = f"{self.tag}-hub"
        self.client = f"{self.tag}-client"
        self.created = []
        self.queued = {}  # node -> nfq.py Popen
        self.blackholes = set()  # (from_node, to_node)

    def node_ns(self, i):
        return f"{self.tag}-n{i}"

    @staticmethod
    def node_ip(i):
        return f"{SUBNET}.{i}"

    @staticmethod
    def client_ip():
        return f"{SUBNET}.{CLIENT_HOST}"

    def _add_ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.created.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _attach(self, ns, ip, port_name):
        # The veth is created inside the hub with its peer inside `ns`: no interface ever
        # appears in the machine's own namespace.
        sh("ip", "-n", self.hub, "link", "add", port_name, "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", self.hub, "link", "set", port_name, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def create(self):
        self._add_ns(self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i in range(1, self.n + 1):
            self._add_ns(self.node_ns(i))
            self._attach(self.node_ns(i), self.node_ip(i), f"vn{i}")
        self._add_ns(self.client)
        self._attach(self.client, self.client_ip(), "vc")

    def exec_prefix(self, ns):
        return ["ip", "netns", "exec", ns]

    # --- partitions -------------------------------------------------------------------
    def set_blackholes(self, pairs):
        """Makes exactly `pairs` (unordered node pairs) unable to reach each other."""
        want = set()
        for a, b in pairs:
            want.add((a, b))
            want.add((b, a))
        for a, b in sorted(self.blackholes - want):
            sh("ip", "-n", self.node_ns(a), "route", "del", "blackhole", f"{self.node_ip(b)}/32",
               check=False)
        for a, b in sorted(want - self.blackholes):
            sh("ip", "-n", self.node_ns(a), "route", "add", "blackhole", f"{self.node_ip(b)}/32")
        self.blackholes = want

    # --- delay and loss ---------------------------------------------------------------
    def _queue_rules(self, i, op):
        peers = ",".join(self.node_ip(j) for j in range(1, self.n + 1) if j != i)
        return sh("ip", "netns", "exec", self.node_ns(i), "iptables-legacy", "-w", op, "OUTPUT",
                  "-d", peers, "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM), "--queue-bypass",
                  check=op != "-D")

    def start_queue(self, i, delay_ms, jitter_ms, loss, seed):
        """Delays and drops node i's packets to its peers (nfq.py in its namespace)."""
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = self.exec_prefix(self.node_ns(i)) + [
            sys.executable, os.path.join(here, "nfq.py"), "--queue", str(QUEUE_NUM),
            "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms), "--loss", str(loss),
            "--seed", str(seed),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = proc.stdout.readline()
        if "bound" not in ready:
            proc.kill()
            err = proc.stderr.read()
            raise RuntimeError(f"nfq.py did not start in n{i}: {ready.strip()} {err.strip()}")
        self.queued[i] = proc
        # -d with several addresses adds one rule per address.
        self._queue_rules(i, "-A")

    def stop_queue(self, i):
        proc = self.queued.pop(i, None)
        if proc is None:
            return
        # Remove the rules first: packets then bypass the queue, none wait in a dead one.
        while self._queue_rules(i, "-D") == 0:
            pass
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def heal(self):
        self.set_blackholes([])
        for i in list(self.queued):
            self.stop_queue(i)

    def destroy(self):
        """Removes every namespace this run created (with its routes, rules, processes)."""
        for i in list(self.queued):
            proc = self.queued.pop(i)
            proc.kill()
            proc.wait()
        for ns in reversed(self.created):
            delete_namespace(ns)
        self.created = []
