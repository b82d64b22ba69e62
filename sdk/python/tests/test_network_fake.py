"""Sandbox networking in the SDK without a VM: network=/allow_out=/deny_out= checking (against
build/amberctl's own parser too), and the create/delete flow against tests/fake_amber.py with a
fake amberctl that logs each `amberctl net` call instead of making namespaces."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

from fakeenv import REPO, needs_agent  # noqa: E402 (puts the SDK on sys.path)

from amber import AsyncSandbox, Sandbox, SandboxClientError, SandboxUnavailableError  # noqa: E402
from amber import network  # noqa: E402

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env

AMBERCTL = os.path.join(REPO, "build", "amberctl")

GOOD = {
    "1.2.3.4": "1.2.3.4",
    "10.0.0.0/8": "10.0.0.0/8",
    "0.0.0.0/0": "0.0.0.0/0",
    "198.51.100.2:8080": "198.51.100.2:8080",
    "192.168.0.0/16:1-1024": "192.168.0.0/16:1-1024",
    "1.2.3.4/32:65535": "1.2.3.4:65535",
    "10.0.0.0/08:080": "10.0.0.0/8:80",
}
BAD = ["", "1.2.3", "1.2.3.256", "01.2.3.4", "example.com", "::1", "[::1]:80", "1.2.3.4/33",
       "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/008", "10.0.0.1/8", "1.2.3.4:0", "1.2.3.4:65536",
       "1.2.3.4:", "1.2.3.4:80-", "1.2.3.4:x", "1.2.3.4:90-80", "1.2.3.4:80/8", " 1.2.3.4",
       "1.2.3.4; drop", "1.2.3.4:80; drop", "1.2.3.4/8\"", "1.2.3.4:+80", "1.2.3.4:８０",
       "255.255.255.255/32:65535-65535xxxxxxxxxxxx"]

# Stands in for build/amberctl: logs each call as one JSON line to $FAKE_NET_LOG, keeps the
# state file the SDK looks for, and execs `net exec`'s program.
FAKE_AMBERCTL = textwrap.dedent("""\
    #!%s
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_NET_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    state = os.environ["AMBER_NET_STATE_DIR"]
    sid = args[args.index("--id") + 1] if "--id" in args else None
    if args[:2] == ["net", "up"]:
        if os.environ.get("FAKE_NET_FAIL"):
            sys.exit("amberctl: sandbox %%s: network set-up failed: %%s" %% (sid, os.environ["FAKE_NET_FAIL"]))
        os.makedirs(state, exist_ok=True)
        open(os.path.join(state, sid), "w").close()
        d = args[args.index("--dir") + 1]
        print(json.dumps({"netns": "amber-" + sid, "tap": "tap0", "amber_net_arg": "tap=tap0,mac=06:00:ac:10:00:02",
                          "guest_script": os.environ.get("FAKE_NET_SCRIPT", "echo ok >%%s/guest-net" %% d)}))
    elif args[:2] == ["net", "down"]:
        try:
            os.unlink(os.path.join(state, sid))
        except FileNotFoundError:
            pass
    elif args[:2] == ["net", "exec"]:
        prog = args[args.index("--") + 1:]
        os.execv(prog[0], prog)
    """) % sys.executable


class TestNetworkArguments(unittest.TestCase):
    """Checks that happen before anything is made (no runtime directory, no amberctl call)."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="amber-net-args-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        os.environ["AMBERCTL_BIN"] = "/nonexistent/amberctl"  # any call would fail loudly
        self.addCleanup(os.environ.pop, "AMBERCTL_BIN", None)

    def refused(self, fn, needle):
        with self.assertRaises(SandboxClientError) as cm:
            fn()
        self.assertEqual(cm.exception.status, 400)
        self.assertIn(needle, str(cm.exception))
        self.assertEqual(os.listdir(self.root), [], "something was made before the refusal")
        return cm.exception

    def test_good_rules_normalised(self):
        for rule, want in GOOD.items():
            self.assertEqual(network.parse_rule(rule), want)
        self.assertEqual(network.check(True, None, None), {"allow_out": [], "deny_out": []})
        self.assertIsNone(network.check(False, None, []))

    def test_bad_rules_refused_before_anything(self):
        for rule in BAD:
            for kw in ("allow_out", "deny_out"):
                with self.subTest(rule=rule, list=kw):
                    e = self.refused(lambda: Sandbox.create(runtime_dir=self.root, network=True, **{kw: [rule]}),
                                     repr(rule))
                    self.assertIn(kw, str(e))
                    self.assertIn("A.B.C.D[/N][:PORT[-PORT]]", str(e))

    def test_async_create_checks_too(self):
        self.refused(lambda: asyncio.run(AsyncSandbox.create(runtime_dir=self.root, network=True,
                                                             deny_out=["10.0.0.1/8"])), "host bits")

    def test_shapes_refused(self):
        self.refused(lambda: Sandbox.create(runtime_dir=self.root, allow_out=["1.2.3.4"]), "need network=True")
        self.refused(lambda: Sandbox.create(runtime_dir=self.root, network=True, deny_out="1.2.3.4"),
                     "must be a list")
        self.refused(lambda: Sandbox.create(runtime_dir=self.root, network=True, allow_out=[1234]), "not a string")
        self.refused(lambda: Sandbox.create(runtime_dir=self.root, network="yes"), "True or False")
        self.refused(lambda: Sandbox.create(runtime_dir=self.root, network=True, deny_out=["1.2.3.4"] * 65),
                     "at most 64")
        self.refused(lambda: Sandbox.create(runtime_dir=self.root, network=True, template="t"), "template")

    @unittest.skipUnless(os.access(AMBERCTL, os.X_OK), "build/amberctl is missing (make build/amberctl)")
    def test_sdk_and_amberctl_agree(self):
        """The SDK checks rules itself (to raise its own error before anything starts); amberctl
        checks again. The two must accept and refuse the same strings."""
        for rule in list(GOOD) + BAD:
            for flag in ("--allow-out", "--deny-out"):
                res = subprocess.run([AMBERCTL, "net", "check", flag, rule], capture_output=True)
                try:
                    network.parse_rule(rule)
                    sdk_ok = True
                except SandboxClientError:
                    sdk_ok = False
                self.assertEqual(res.returncode == 0, sdk_ok, "%r: SDK %s, amberctl exit %d: %s"
                                 % (rule, "accepts" if sdk_ok else "refuses", res.returncode, res.stderr))
                if not sdk_ok:
                    self.assertEqual(res.returncode, 2)


@needs_agent
class TestNetworkFlow(unittest.TestCase):
    """create/delete with network=True drive `amberctl net` in the right order."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amber-net-flow-")
        self.root = os.path.join(self.tmp, "run")
        os.mkdir(self.root)
        self.addCleanup(self.cleanup)
        ctl = os.path.join(self.tmp, "amberctl")
        with open(ctl, "w") as f:
            f.write(FAKE_AMBERCTL)
        os.chmod(ctl, 0o755)
        self.log = os.path.join(self.tmp, "net.log")
        self.state = os.path.join(self.tmp, "netstate")
        for k, v in (("AMBERCTL_BIN", ctl), ("FAKE_NET_LOG", self.log), ("AMBER_NET_STATE_DIR", self.state)):
            os.environ[k] = v
            self.addCleanup(os.environ.pop, k, None)

    def cleanup(self):
        for sbx in Sandbox.list(runtime_dir=self.root):
            try:
                sbx.delete()
            except Exception:  # noqa: BLE001
                pass
        fakeenv.kill_leftovers(self.root)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def calls(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def test_create_runs_in_the_namespace_and_delete_removes_it(self):
        sbx = Sandbox.create(runtime_dir=self.root, sandbox_id="net1", network=True,
                             allow_out=["198.51.100.2:8080"], deny_out=["0.0.0.0/0"])
        calls = self.calls()
        self.assertEqual(calls[0], ["net", "up", "--id", "net1", "--dir", sbx.dir, "--allow-out",
                                    "198.51.100.2:8080", "--deny-out", "0.0.0.0/0"])
        self.assertEqual(calls[1][:5], ["net", "exec", "--id", "net1", "--"])
        self.assertIn("--net", calls[1])
        self.assertEqual(calls[1][calls[1].index("--net") + 1], "tap=tap0,mac=06:00:ac:10:00:02")
        self.assertEqual(sbx.config["network"]["netns"], "amber-net1")
        with open(os.path.join(sbx.dir, "guest-net")) as f:  # the guest script ran, via the agent
            self.assertEqual(f.read(), "ok\n")
        self.assertTrue(os.path.exists(os.path.join(self.state, "net1")))
        with self.assertRaises(SandboxClientError) as cm:
            sbx.pause(keep_memory=False)
        self.assertEqual(cm.exception.status, 409)
        with self.assertRaises(SandboxClientError):
            sbx.fork()
        sbx.delete()
        self.assertEqual(self.calls()[-1], ["net", "down", "--id", "net1"])
        self.assertFalse(os.path.exists(os.path.join(self.state, "net1")))

    def test_no_network_calls_nothing(self):
        sbx = Sandbox.create(runtime_dir=self.root)
        self.assertNotIn("--net", sbx.config["argv"])
        self.assertNotIn("network", sbx.config)
        sbx.delete()
        self.assertEqual(self.calls(), [])

    def test_failed_up_leaves_nothing(self):
        os.environ["FAKE_NET_FAIL"] = "nft: not found"
        self.addCleanup(os.environ.pop, "FAKE_NET_FAIL", None)
        with self.assertRaises(SandboxUnavailableError) as cm:
            Sandbox.create(runtime_dir=self.root, network=True)
        self.assertIn("nft: not found", str(cm.exception))
        self.assertEqual([n for n in os.listdir(self.root) if not n.startswith(".")], [])
        self.assertEqual([c[:2] for c in self.calls()], [["net", "up"]])

    def test_failed_guest_setup_removes_the_network(self):
        os.environ["FAKE_NET_SCRIPT"] = "echo no eth0 >&2; exit 3"
        self.addCleanup(os.environ.pop, "FAKE_NET_SCRIPT", None)
        with self.assertRaises(SandboxUnavailableError) as cm:
            Sandbox.create(runtime_dir=self.root, sandbox_id="net2", network=True)
        self.assertIn("no eth0", str(cm.exception))
        self.assertEqual([n for n in os.listdir(self.root) if not n.startswith(".")], [])
        self.assertEqual(self.calls()[-1], ["net", "down", "--id", "net2"])
        self.assertEqual(os.listdir(self.state), [])

    def test_async_create_and_delete(self):
        async def go():
            a = await AsyncSandbox.create(runtime_dir=self.root, sandbox_id="net3", network=True,
                                          deny_out=["10.0.0.0/8:22"])
            self.assertTrue(os.path.exists(os.path.join(a._s.dir, "guest-net")))
            await a.delete()
        asyncio.run(go())
        self.assertEqual([c[:2] for c in self.calls()], [["net", "up"], ["net", "exec"], ["net", "down"]])
        self.assertIn("10.0.0.0/8:22", self.calls()[0])

    def test_list_collects_leftovers(self):
        os.makedirs(self.state)
        open(os.path.join(self.state, "gone1"), "w").close()  # as a killed SDK leaves it
        Sandbox.list(runtime_dir=self.root)
        self.assertIn(["net", "gc"], self.calls())


if __name__ == "__main__":
    unittest.main()
