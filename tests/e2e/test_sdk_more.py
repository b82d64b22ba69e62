"""e2e tests of the SDK surface added for issue 18 on a real guest: streaming commands.run,
background commands reattached from another process, and the agent's bounded output tail.

One sandbox for the whole module (boots cost 15-30 s in the test host); each test cleans up
what it started in the guest.
"""
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SDK = os.path.join(REPO, "sdk", "python")
sys.path.insert(0, HERE)
sys.path.insert(0, SDK)

import harness  # noqa: E402
import util_amber as U  # noqa: E402
from amber import (CommandExitError, CommandNotFoundError, Sandbox, SandboxClientError,  # noqa: E402
                   SandboxFileNotFoundError, SandboxFileTypeError, SandboxTimeoutError, StdinClosedError)

_ROOT = None
_SBX = None


def setUpModule():
    global _ROOT, _SBX
    _ROOT, _SBX = U.start_shared_sandbox("sdk-more")


def tearDownModule():
    U.end_shared_sandbox("sdk-more", _ROOT, _SBX)


class TestCommandsE2E(unittest.TestCase):
    def test_run_streams_output_as_it_comes(self):
        t0 = time.monotonic()
        seen = []
        res = _SBX.commands.run("echo first; sleep 2; echo second",
                                on_stdout=lambda s: seen.append((time.monotonic() - t0, s)))
        total = time.monotonic() - t0
        harness.log("first streamed byte after %.3f s of %.3f s" % (seen[0][0], total))
        self.assertEqual(res.stdout, "first\nsecond\n")
        self.assertEqual(seen[0][1], "first\n")
        self.assertLess(seen[0][0], total - 1.0, "the first line came only at the end")

    def test_run_errors(self):
        with self.assertRaises(CommandExitError) as cm:
            _SBX.commands.run("echo nope >&2; exit 7")
        self.assertEqual((cm.exception.exit_code, cm.exception.stderr), (7, "nope\n"))
        with self.assertRaises(SandboxTimeoutError):
            _SBX.commands.run("sleep 20", timeout=1)
        with self.assertRaises(SandboxClientError):
            _SBX.commands.run("true", timeout=0)
        with self.assertRaises(CommandNotFoundError):
            _SBX.commands.connect(3999999)

    def test_background_server_reattached_from_another_process(self):
        code = ("import sys; sys.path.insert(0, %r); from amber import Sandbox; "
                "s = Sandbox.get(%r, runtime_dir=%r); "
                "h = s.commands.run('echo ready; while read l; do echo got:$l; done; echo bye; exit 5', "
                "background=True); print(h.pid)" % (SDK, _SBX.id, os.path.dirname(_SBX.dir)))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, timeout=60)
        pid = int(out.stdout)
        self.assertIn(pid, [p.pid for p in _SBX.commands.list()], "died with its creator")
        h = _SBX.commands.connect(pid)
        h.send_stdin("one\n")
        h.close_stdin()
        with self.assertRaises(StdinClosedError):
            h.send_stdin("two\n")
        with self.assertRaises(CommandExitError) as cm:
            h.wait(timeout=30)
        self.assertEqual(cm.exception.exit_code, 5)
        self.assertEqual(cm.exception.stdout, "ready\ngot:one\nbye\n")

    def test_flood_is_bounded_in_guest_and_sdk(self):
        _SBX.execute("rm -f /tmp/flood.done")
        h = _SBX.commands.run("head -c 8388608 /dev/zero | tr '\\0' f; echo; echo end; touch /tmp/flood.done; "
                              "sleep 60", background=True)
        h.disconnect()
        deadline = time.monotonic() + 60
        while not _SBX.files.exists("/tmp/flood.done") and time.monotonic() < deadline:
            time.sleep(0.5)  # the whole flood has gone through the agent, with nobody attached
        h2 = _SBX.commands.connect(h.pid)
        deadline = time.monotonic() + 30
        while not h2.stdout.endswith("end\n") and time.monotonic() < deadline:
            time.sleep(0.2)  # the replay of what the agent kept
        self.assertTrue(h2.kill())
        with self.assertRaises(CommandExitError) as cm:
            h2.wait(timeout=30)
        res = cm.exception.result
        self.assertTrue(res.stdout.endswith("\nend\n"))
        self.assertLessEqual(len(res.stdout_bytes), 1 << 20)
        self.assertEqual(res.stdout_dropped + len(res.stdout_bytes), 8388608 + 5)


class TestFilesE2E(unittest.TestCase):
    def test_stream_a_large_file_both_ways(self):
        size = 32 << 20
        pattern = bytes(range(256)) * 256  # 64 KiB

        def source():
            for _ in range(size // len(pattern)):
                yield pattern
        t0 = time.monotonic()
        info = _SBX.files.write("/tmp/big.bin", source())
        up = time.monotonic() - t0
        self.assertEqual(info.size, size)
        t0 = time.monotonic()
        got, bad = 0, 0
        stream = _SBX.files.read("/tmp/big.bin", format="stream")
        for chunk in stream:
            self.assertLessEqual(len(chunk), 64 * 1024)
            expect = (pattern * 2)[got % len(pattern):got % len(pattern) + len(chunk)]
            bad += chunk != expect
            got += len(chunk)
        down = time.monotonic() - t0
        harness.log("files: 32 MiB up %.1f MiB/s, down %.1f MiB/s" % (32 / up, 32 / down))
        self.assertEqual((got, bad), (size, 0))
        self.assertEqual(_SBX.execute("md5sum < /tmp/big.bin").stdout.split()[0],
                         __import__("hashlib").md5(pattern * (size // len(pattern))).hexdigest())
        _SBX.files.remove("/tmp/big.bin")
        self.assertFalse(_SBX.files.exists("/tmp/big.bin"))

    def test_metadata_ops(self):
        f = _SBX.files
        self.assertTrue(f.make_dir("/tmp/fx/a/b"))
        self.assertFalse(f.make_dir("/tmp/fx/a/b"))
        f.write("/tmp/fx/a/one.txt", "one", mode=0o600)
        _SBX.execute("ln -s /etc /tmp/fx/a/link")
        info = f.get_info("/tmp/fx/a/one.txt")
        self.assertEqual((info.type, info.size, info.mode, info.permissions), ("file", 3, 0o600, "rw-------"))
        self.assertLess(abs(info.mtime - float(_SBX.execute("date +%s").stdout)), 120)
        self.assertEqual([(e.name, e.type) for e in f.list("/tmp/fx/a")],
                         [("b", "dir"), ("link", "symlink"), ("one.txt", "file")])
        self.assertEqual([e.path for e in f.list("/tmp/fx", depth=3)],
                         ["/tmp/fx/a", "/tmp/fx/a/b", "/tmp/fx/a/link", "/tmp/fx/a/one.txt"])
        self.assertEqual(f.rename("/tmp/fx/a/one.txt", "/tmp/fx/two.txt").path, "/tmp/fx/two.txt")
        self.assertEqual(f.read("/tmp/fx/two.txt"), "one")
        with self.assertRaises(SandboxFileNotFoundError):
            f.read("/tmp/fx/a/one.txt")
        with self.assertRaises(SandboxFileTypeError):
            f.read("/tmp/fx/a")
        with self.assertRaises(SandboxFileTypeError):
            f.list("/tmp/fx/two.txt")
        f.remove("/tmp/fx")
        self.assertFalse(f.exists("/tmp/fx"))
        self.assertTrue(f.exists("/etc/passwd"), "remove must not follow the symlink to /etc")


class TestLifetimeE2E(unittest.TestCase):
    def test_pause_on_timeout_then_resume(self):
        rec = _SBX.set_timeout(2, on_timeout="pause")
        self.assertEqual(rec["on_timeout"], "pause")
        deadline = time.monotonic() + 15
        while _SBX.state() != "Paused" and time.monotonic() < deadline:
            time.sleep(0.5)
        self.assertEqual(_SBX.state(), "Paused", "amber did not pause at the deadline")
        _SBX.resume()
        self.assertEqual(_SBX.commands.run("echo back").stdout, "back\n")

    @harness.long_tier("amberctl create's lifetime: the SDK's timeout tests run")
    def test_amberctl_create_and_kill_on_timeout_after_it_exited(self):
        root = os.path.dirname(_SBX.dir)
        out = subprocess.run([os.path.join(REPO, "build", "amberctl"), "create", "--timeout", "3",
                              "--metadata", "e2e=lifetime", "--env", "GREETING=hi"],
                             stdout=subprocess.PIPE, check=True, timeout=300,
                             env=dict(os.environ, XDG_RUNTIME_DIR=os.path.dirname(root)))
        sid = out.stdout.decode().strip()
        self.assertEqual([s.id for s in Sandbox.list(runtime_dir=root, metadata={"e2e": "lifetime"})], [sid])
        deadline = time.monotonic() + 30
        err = None
        while time.monotonic() < deadline:
            try:
                Sandbox.get(sid, runtime_dir=root)
            except Exception as e:  # noqa: BLE001 - SandboxNotFoundError once amber stopped it
                err = e
                break
            time.sleep(0.5)
        self.assertIsNotNone(err, "the sandbox outlived its timeout")
        self.assertIn("timeout", str(err))


class TestAsyncE2E(unittest.TestCase):
    def test_async_sandbox_on_a_real_guest(self):
        import asyncio
        from amber import AsyncSandbox

        async def main():
            a = await AsyncSandbox.connect(_SBX.id, runtime_dir=os.path.dirname(_SBX.dir))
            chunks = []
            r = await a.commands.run("echo one; sleep 1; echo two", on_stdout=chunks.append)
            self.assertEqual((r.stdout, chunks[0]), ("one\ntwo\n", "one\n"))
            h = await a.commands.run("echo bg; sleep 30", background=True)
            async for out, _err in h:
                self.assertEqual(out, "bg\n")
                break
            self.assertTrue(await h.kill())
            await a.files.write("/tmp/async.txt", "héllo")
            self.assertEqual(await a.files.read("/tmp/async.txt"), "héllo")
            await a.files.remove("/tmp/async.txt")
        asyncio.run(main())


if __name__ == "__main__":
    unittest.main()
