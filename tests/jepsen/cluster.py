"""The `dhrt serve` processes of the test, one per node namespace, and HTTP to them.

Each node listens on its namespace address (10.77.0.i:7453) with a cluster secret, keeps
its data in its own directory (persisted), and logs to its own file (appended across
restarts, each start marked). The first node starts alone, the others `--join` it; a
restart keeps the data dir and id (node.redb) and rejoins through the peers it knew.
A *wipe* removes the collection files and the write-ahead log but keeps node.redb, so
the node comes back as the same member with an empty store (dhrt has no `--id` flag: the
id lives in node.redb). Clock skew is libfaketime preloaded with a relative FAKETIME.

The harness process runs in the client namespace (see `enter_namespace`), so every
HTTP request here goes over the test's private network.
"""

import ctypes
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
PORT = 7453
COLLECTION = "jepsen"
CLONE_NEWNET = 0x40000000


def enter_namespace(ns):
    """Moves this process (its main thread, and threads started later) into `ns`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def request(addr, method, path, body=None, timeout=3.0):
    """One HTTP request on a fresh connection: (status, headers dict, body bytes).
    Raises OSError/http.client errors for connection failures and timeouts."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def key_path(key, consistency="quorum"):
    k = urllib.parse.quote(key, safe="")
    return f"/v1/collections/{COLLECTION}/keys/{k}?consistency={consistency}"


class Node:
    """One `dhrt serve` process in its namespace."""

    def __init__(self, i, net, workdir, binary, secret_file, log):
        self.i = i
        self.net = net
        self.ns = net.node_ns(i)
        self.ip = net.node_ip(i)
        self.addr = f"{self.ip}:{PORT}"
        self.data = os.path.join(workdir, f"n{i}", "data")
        self.logfile = os.path.join(workdir, f"n{i}", "node.log")
        os.makedirs(self.data, exist_ok=True)
        self.binary = binary
        self.secret_file = secret_file
        self.proc = None
        self.paused = False
        self.skew = None
        self.id = None
        self.log = log

    def start(self, join=(), skew=None):
        """Starts the node (with FAKETIME=`skew` when given, e.g. "-0.3")."""
        assert self.proc is None
        cmd = self.net.exec_prefix(self.ns) + [
            self.binary, "serve", "--host", self.ip, "--port", str(PORT),
            "--advertise", self.addr, "--data-dir", self.data,
            "--cluster-secret-file", self.secret_file,
            # No client tokens: the addresses exist only inside the test's namespaces.
            "--insecure",
        ]
        for j in join:
            cmd += ["--join", j]
        env = dict(os.environ, DHRT_LOG=os.environ.get("DHRT_LOG", "info"))
        env.pop("DHRT_CONFIG", None)
        if skew:
            env["LD_PRELOAD"] = FAKETIME_LIB
            env["FAKETIME"] = skew
        self.skew = skew
        with open(self.logfile, "a") as f:
            f.write(f"\n===== start {time.strftime('%H:%M:%S')} skew={skew} join={list(join)}\n")
            f.flush()
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=f, env=env,
                                         stdin=subprocess.DEVNULL)
        self.paused = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """kill -9 and reap (a paused node is killed too)."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        self.paused = False

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def wipe(self):
        """Removes the store (collections, log) of a stopped node; node.redb stays."""
        assert self.proc is None
        for name in os.listdir(self.data):
            if name == "node.redb":
                continue
            path = os.path.join(self.data, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def health(self, timeout=2.0):
        """(status code, json) of GET /v1/health, or (None, error text)."""
        try:
            status, _, body = request(self.addr, "GET", "/v1/health", timeout=timeout)
            return status, json.loads(body or b"{}")
        except (OSError, http.client.HTTPException, ValueError) as e:
            return None, str(e)

    def wait_serving(self, deadline_s):
        """Waits until /v1/health answers 200 (the node serves); False on the deadline."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if not self.running():
                return False
            status, body = self.health()
            if status == 200:
                self.id = body.get("node", self.id)
                return True
            time.sleep(0.2)
        return False

    def stats(self):
        try:
            status, _, body = request(self.addr, "GET", "/v1/stats", timeout=3.0)
            return json.loads(body) if status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def ring(self):
        try:
            status, _, body = request(self.addr, "GET", "/v1/ring", timeout=3.0)
            return json.loads(body) if status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None


def preference_lists(ring, positions, replicas):
    """key -> the ids of its `replicas` owners on `ring` (GET /v1/ring), as the core's
    RingTable::preference_list: first token at or after the key's position, then the
    next distinct nodes clockwise. Members that left hold no tokens."""
    vnodes = []
    for m in ring.get("members", []):
        if m.get("status") == "left":
            continue
        for t in m.get("tokens", []):
            vnodes.append((int(t), str(m["id"])))
    vnodes.sort()
    out = {}
    import bisect
    for key, pos in positions.items():
        owners = []
        if vnodes:
            start = bisect.bisect_left(vnodes, (pos, ""))
            for k in range(len(vnodes)):
                node = vnodes[(start + k) % len(vnodes)][1]
                if node not in owners:
                    owners.append(node)
                if len(owners) >= replicas:
                    break
        out[key] = owners
    return out


def key_positions(binary, keys):
    """Ring position of each key of COLLECTION (`dhrt position`, computed offline)."""
    out = {}
    for key in keys:
        text = subprocess.run([binary, "position", COLLECTION, key], capture_output=True,
                              text=True, check=True).stdout
        out[key] = int(text.split()[0])
    return out
