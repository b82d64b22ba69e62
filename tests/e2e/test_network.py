"""e2e tests of sandbox networking (docs/network.md) on real guests: Sandbox.create(network=True)
reaches a server in another namespace ("the internet") through NAT, with DNS; deny_out blocks
it and allow_out lets an address through; network=False has no interface; amberctl create
--network does the same; and nothing is left behind after delete or after amber is killed.

Nothing leaves the machine: "the internet" is the namespace amber-e2e-inet, joined to the host
by the veth ambe2e-inet (198.51.100.0/24, TEST-NET-2), serving HTTP on 8080 and 8081 and DNS
(internet.test -> 198.51.100.2) on 53. Needs root, ip and nft (the nftables package).
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))

import harness  # noqa: E402
from amber import Sandbox  # noqa: E402

AMBERCTL = os.path.join(REPO, "build", "amberctl")
INET_NS = "amber-e2e-inet"
INET_IF = "ambe2e-inet"
INET_HOST = "198.51.100.1"
INET_ADDR = "198.51.100.2"
TOKEN = "amber-net-e2e-7f3a"

# "The internet": HTTP on two ports (a different body on each) and a DNS server that answers
# every A query for internet.test; runs inside INET_NS.
SERVER = r"""
import http.server, socket, socketserver, struct, sys, threading
addr, token = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s %d\n" % (token, self.server.server_address[1])).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
for port in (8080, 8081):
    s = socketserver.ThreadingTCPServer((addr, port), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind((addr, 53))
print("ready", flush=True)
while True:
    q, peer = dns.recvfrom(512)
    if len(q) < 12:
        continue
    end = q.index(b"\0", 12) + 5  # the question: name, type, class
    name = q[12:end - 5]
    ours = name.lower().endswith(b"\x08internet\x04test")
    a = ours and q[end - 4:end - 2] == b"\0\1"  # type A; others get an empty NOERROR
    hdr = q[:2] + struct.pack(">HHHHH", 0x8180 if ours else 0x8183, 1, 1 if a else 0, 0, 0)
    ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(addr) if a else b""
    dns.sendto(hdr + q[12:end] + ans, peer)
"""


def run(argv, timeout=60):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def leftovers(sandbox_id):
    """What of sandbox_id's network still exists: namespaces, nft tables, links, records."""
    out = []
    if ("amber-%s" % sandbox_id) in run(["ip", "netns", "list"]).stdout.decode().split():
        out.append("netns amber-%s" % sandbox_id)
    out += [t for t in re.findall(r"table ip (amber_net_\d+)", run(["nft", "list", "tables"]).stdout.decode())]
    out += re.findall(r"^\d+: (ambn\d+)[@:]", run(["ip", "-o", "link"]).stdout.decode(), re.M)
    state = os.environ.get("AMBER_NET_STATE_DIR") or "/run/amber-net"
    if os.path.exists(os.path.join(state, sandbox_id)):
        out.append("record %s/%s" % (state, sandbox_id))
    return out


def need_net():
    if not os.access(harness.AMBER, os.X_OK) or not os.access(AMBERCTL, os.X_OK):
        raise unittest.SkipTest("build/amber or build/amberctl is missing: run make")
    if not os.path.exists("/dev/kvm"):
        raise unittest.SkipTest("no /dev/kvm here (run through tests/e2e/run.sh or scripts/testhost.sh)")
    if os.geteuid() != 0:
        raise unittest.SkipTest("sandbox networking needs root")
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            raise unittest.SkipTest("%s is missing (apt-get install %s)" % (tool, "nftables" if tool == "nft" else "iproute2"))


class TestNetwork(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need_net()
        cls.xdg = tempfile.mkdtemp(prefix="amber-net-", dir="/tmp")
        cls.root = os.path.join(cls.xdg, "amber")
        cls.saved_env = {k: os.environ.get(k) for k in ("AMBER_NET_DNS", "XDG_RUNTIME_DIR")}
        os.environ["AMBER_NET_DNS"] = INET_ADDR  # the guest's resolver is "the internet's"
        os.environ["XDG_RUNTIME_DIR"] = cls.xdg  # amberctl's runtime directory = cls.root
        cls.server = None
        try:
            cls.make_internet()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def make_internet(cls):
        run(["ip", "netns", "del", INET_NS])
        run(["ip", "link", "del", INET_IF])
        for cmd in (["ip", "netns", "add", INET_NS],
                    ["ip", "link", "add", INET_IF, "type", "veth", "peer", "name", "eth0", "netns", INET_NS],
                    ["ip", "addr", "add", INET_HOST + "/24", "dev", INET_IF],
                    ["ip", "link", "set", INET_IF, "up"],
                    ["ip", "-n", INET_NS, "addr", "add", INET_ADDR + "/24", "dev", "eth0"],
                    ["ip", "-n", INET_NS, "link", "set", "eth0", "up"],
                    ["ip", "-n", INET_NS, "link", "set", "lo", "up"]):
            res = run(cmd)
            if res.returncode != 0:
                raise AssertionError("%s: %s" % (" ".join(cmd), res.stdout.decode(errors="replace")))
        cls.server = subprocess.Popen(["ip", "netns", "exec", INET_NS, sys.executable, "-c", SERVER, INET_ADDR, TOKEN],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = cls.server.stdout.readline().decode(errors="replace")
        if "ready" not in line:
            raise AssertionError("the test server did not start: %s" % line)

    @classmethod
    def tearDownClass(cls):
        for sbx in Sandbox.list(runtime_dir=cls.root):
            try:
                sbx.delete()
            except Exception:  # noqa: BLE001
                pass
        if cls.server:
            cls.server.kill()
            cls.server.wait()
        run(["ip", "netns", "del", INET_NS])
        run(["ip", "link", "del", INET_IF])
        for k, v in cls.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(cls.xdg, ignore_errors=True)

    def create(self, **kw):
        t0 = time.monotonic()
        sbx = Sandbox.create(runtime_dir=self.root, **kw)
        harness.log("sandbox %s (%s) up in %.1f s" % (sbx.id, kw, time.monotonic() - t0))
        self.addCleanup(self.delete_quietly, sbx)
        return sbx

    def delete_quietly(self, sbx):
        try:
            sbx.delete()
        except Exception:  # noqa: BLE001
            pass

    def fetch(self, sbx, url, limit_s=20):
        """(exit status, output) of busybox wget url in the guest, given limit_s seconds."""
        res = sbx.execute("timeout %d wget -q -O - %s 2>&1" % (limit_s, url), timeout=harness.scaled(60))
        return res.returncode, res.stdout.strip()

    def assert_reaches(self, sbx, port, host=INET_ADDR):
        rc, out = self.fetch(sbx, "http://%s:%d/" % (host, port))
        self.assertEqual((rc, out), (0, "%s %d" % (TOKEN, port)),
                         "the guest cannot reach %s:%d\n%s" % (host, port, sbx.console(20)))

    def assert_blocked(self, sbx, port):
        rc, out = self.fetch(sbx, "http://%s:%d/" % (INET_ADDR, port), limit_s=8)  # dropped: it hangs
        self.assertNotEqual(rc, 0, "the guest reached %s:%d, which its rules block: %s" % (INET_ADDR, port, out))
        self.assertNotIn(TOKEN, out)

    def assert_clean(self, sandbox_id):
        self.assertEqual(leftovers(sandbox_id), [], "sandbox %s left these behind" % sandbox_id)

    @harness.long_tier("NAT, DNS and delete: test_deny_out_blocks_and_allow_out_lets_through reaches the "
                       "server through the same NAT and checks that nothing is left after amber dies")
    def test_network_nat_dns_and_delete(self):
        sbx = self.create(network=True)
        addr = sbx.execute("ip -4 -o addr show dev eth0").stdout
        self.assertIn("172.16.0.2/30", addr)
        self.assert_reaches(sbx, 8080)
        self.assert_reaches(sbx, 8081)
        self.assertIn("nameserver %s" % INET_ADDR, sbx.execute("cat /etc/resolv.conf").stdout)
        look = sbx.execute("timeout 20 nslookup internet.test 2>&1", timeout=harness.scaled(40)).stdout
        self.assertIn(INET_ADDR, look, "the guest's DNS lookup failed:\n%s" % look)
        # The host itself is not the guest's to reach: a listener on the host's end of the link.
        host_ip = sbx.config["network"]["host_ip"]
        with socket.socket() as lst:
            lst.bind(("0.0.0.0", 8089))
            lst.listen(1)
            res = sbx.execute("timeout 6 nc %s 8089 </dev/null; echo rc=$?" % host_ip, timeout=harness.scaled(30))
            lst.settimeout(0.5)
            with self.assertRaises(socket.timeout, msg="the guest opened a connection to the host"):
                lst.accept()
        harness.log("guest -> host %s:8089: %s" % (host_ip, res.stdout.strip()))
        self.assertNotEqual(leftovers(sbx.id), [])  # the probe can see a live network
        sbx.delete()
        self.assert_clean(sbx.id)

    def test_deny_out_blocks_and_allow_out_lets_through(self):
        sbx = self.create(network=True, deny_out=["0.0.0.0/0"], allow_out=[INET_ADDR + ":8080"])
        self.assert_reaches(sbx, 8080)  # allow_out wins over deny_out
        self.assert_blocked(sbx, 8081)  # deny_out blocks what allow_out does not list
        sid = sbx.id
        # amber killed (as by the OOM killer): the next list collects its network.
        os.kill(sbx.pid, 9)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sid in [s.id for s in Sandbox.list(runtime_dir=self.root)]:
            time.sleep(0.5)
        Sandbox.list(runtime_dir=self.root)
        self.assert_clean(sid)

    @harness.long_tier("deny_out without allow_out: test_deny_out_blocks_and_allow_out_lets_through runs both "
                       "lists, and test_netns_rules.c checks the ruleset")
    def test_deny_out_alone(self):
        sbx = self.create(network=True, deny_out=[INET_ADDR + "/32:8081"])
        self.assert_reaches(sbx, 8080)
        self.assert_blocked(sbx, 8081)
        sbx.delete()
        self.assert_clean(sbx.id)

    @harness.long_tier("network=False: the fake SDK test checks that it calls nothing, and the rest of the "
                       "suite boots without a network")
    def test_no_network_no_interface(self):
        sbx = self.create()
        links = sbx.execute("ls /sys/class/net").stdout.split()
        self.assertEqual(links, ["lo"], "network=False gave the guest %s" % links)
        self.assertNotIn("network", sbx.config)
        self.assertEqual(leftovers(sbx.id), [])

    @harness.long_tier("amberctl create --network: the SDK drives the same ctl/netns.c through amberctl net up")
    def test_amberctl_create_network(self):
        out = run([AMBERCTL, "create", "--network", "--allow-out", INET_ADDR + ":8081",
                   "--deny-out", INET_ADDR, "--json"], timeout=harness.scaled(120))
        self.assertEqual(out.returncode, 0, out.stdout.decode(errors="replace"))
        sid = json.loads(out.stdout.decode().strip().splitlines()[-1])["id"]
        sbx = Sandbox.get(sid, runtime_dir=self.root)
        self.addCleanup(self.delete_quietly, sbx)
        self.assertEqual(sbx.config["network"]["allow_out"], [INET_ADDR + ":8081"])
        self.assert_reaches(sbx, 8081)
        self.assert_blocked(sbx, 8080)
        res = run([AMBERCTL, "delete", "--id", sid])
        self.assertEqual(res.returncode, 0, res.stdout.decode(errors="replace"))
        self.assert_clean(sid)

    def test_bad_rule_refused_by_amberctl(self):
        res = run([AMBERCTL, "create", "--network", "--deny-out", "10.0.0.1/8"])
        self.assertEqual(res.returncode, 2)
        self.assertIn("host bits", res.stdout.decode())
        self.assertEqual([n for n in os.listdir(self.root) if not n.startswith(".")]
                         if os.path.isdir(self.root) else [], [])


if __name__ == "__main__":
    unittest.main()
