"""sbx.commands against tests/fake_amber.py (a real amber-agent on a Unix socket): streaming,
background commands, reattach from another process, bad input and bounded memory."""
import os
import subprocess
import sys
import time
import unittest

from fakeenv import AGENT, FAKE, HERE, REPO, SDK, needs_agent  # noqa: E402,F401 (puts the SDK on sys.path)

from amber import (CommandExitError, CommandNotFoundError, Sandbox, SandboxClientError,  # noqa: E402
                   SandboxTimeoutError, StdinClosedError, commands)

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


class TestCommands(fakeenv.SharedSandboxCase):

    def test_run_streams_before_exit(self):
        t0 = time.monotonic()
        seen = []
        res = self.sbx.commands.run("echo first; sleep 1; echo second; echo e >&2",
                                    on_stdout=lambda s: seen.append((time.monotonic() - t0, s)),
                                    on_stderr=lambda s: seen.append((time.monotonic() - t0, "ERR" + s)))
        total = time.monotonic() - t0
        self.assertEqual(res.stdout, "first\nsecond\n")
        self.assertEqual((res.stderr, res.exit_code), ("e\n", 0))
        self.assertEqual(seen[0][1], "first\n")
        self.assertLess(seen[0][0], total - 0.5, "the first line arrived only at the end: not streamed")
        self.assertIn("ERRe\n", [s for _t, s in seen])

    def test_run_env_cwd_and_execute_still_works(self):
        res = self.sbx.commands.run("echo $A$B; pwd", env={"A": "x"}, envs={"B": "y"}, cwd="/tmp")
        self.assertEqual(res.stdout, "xy\n/tmp\n")
        self.assertEqual(self.sbx.execute("echo ok").stdout, "ok\n")

    def test_run_failures(self):
        with self.assertRaises(CommandExitError) as cm:
            self.sbx.commands.run("echo out; exit 3")
        self.assertEqual((cm.exception.exit_code, cm.exception.stdout), (3, "out\n"))
        with self.assertRaises(SandboxTimeoutError) as cm:
            self.sbx.commands.run("echo partial; sleep 10", timeout=0.5)
        self.assertEqual(cm.exception.result.stdout, "partial\n")
        for bad in (0, -1, "5", True):
            with self.assertRaises(SandboxClientError) as cm:
                self.sbx.commands.run("true", timeout=bad)
            self.assertIn("timeout must be a positive number", str(cm.exception))

    def test_run_output_memory_is_bounded(self):
        keep = commands.OUTPUT_KEEP
        commands.OUTPUT_KEEP = 64 * 1024
        try:
            n = 0

            def count(s):
                nonlocal n
                n += len(s)
            res = self.sbx.commands.run("head -c 4194304 /dev/zero | tr '\\0' a", on_stdout=count)
        finally:
            commands.OUTPUT_KEEP = keep
        self.assertEqual(n, 4 << 20, "the callback must see every byte")
        self.assertEqual(len(res.stdout_bytes), 64 * 1024)
        self.assertEqual(res.stdout_dropped, (4 << 20) - 64 * 1024)

    def test_background_stdin_list_kill(self):
        h = self.sbx.commands.run("cat; echo done", background=True)
        self.assertIn(h.pid, [p.pid for p in self.sbx.commands.list()])
        h.send_stdin("abc\n")
        h.send_stdin(b"def\n")
        h.close_stdin()
        res = h.wait(timeout=10)
        self.assertEqual(res.stdout, "abc\ndef\ndone\n")
        with self.assertRaises(StdinClosedError):
            h.send_stdin("more")  # the command has ended
        h = self.sbx.commands.run("sleep 30", background=True)
        h.close_stdin()
        with self.assertRaises(StdinClosedError) as cm:
            h.send_stdin("more")  # still running, stdin closed
        self.assertIn("stdin is closed", str(cm.exception))
        with self.assertRaises(StdinClosedError):
            h.close_stdin()
        self.assertTrue(h.kill())
        h = self.sbx.commands.run("echo up; sleep 30", background=True)
        it = iter(h)
        self.assertEqual(next(it), ("up\n", None))
        self.assertTrue(h.kill())
        with self.assertRaises(CommandExitError) as cm:
            h.wait(timeout=10)
        self.assertEqual(cm.exception.exit_code, -9)
        self.assertNotIn(h.pid, [p.pid for p in self.sbx.commands.list()])

    def test_unknown_pid_and_bad_pid(self):
        for call in (lambda: self.sbx.commands.connect(4000000), lambda: self.sbx.commands.kill(4000000),
                     lambda: self.sbx.commands.send_stdin(4000000, "x")):
            with self.assertRaises(CommandNotFoundError) as cm:
                call()
            self.assertIn("no background command with pid 4000000", str(cm.exception))
            self.assertEqual(cm.exception.status, 404)
        for bad in (0, -5, "12", None):
            with self.assertRaises(SandboxClientError):
                self.sbx.commands.connect(bad)

    def test_connect_from_another_process_after_creator_exits(self):
        code = ("import sys; sys.path.insert(0, %r); from amber import Sandbox; "
                "s = Sandbox.get(%r, runtime_dir=%r); "
                "h = s.commands.run('echo early; read x; echo got $x; exit 4', background=True); "
                "print(h.pid)" % (SDK, self.sbx.id, self.root))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, timeout=60,
                             env=dict(os.environ))
        pid = int(out.stdout)
        self.assertIn(pid, [p.pid for p in self.sbx.commands.list()],
                      "the background command died with its creator")
        h = self.sbx.commands.connect(pid)
        self.sbx.commands.send_stdin(pid, "hello\n")  # a second, brief client
        with self.assertRaises(CommandExitError) as cm:
            h.wait(timeout=10)
        self.assertEqual(cm.exception.exit_code, 4)
        self.assertEqual(cm.exception.stdout, "early\ngot hello\n", "replayed then live output")

    def test_guest_keeps_a_bounded_tail(self):
        # 3 MiB before anyone reattaches: the agent keeps about the last 1 MiB.
        h = self.sbx.commands.run("head -c 3145728 /dev/zero | tr '\\0' b; echo; echo end; sleep 30",
                                  background=True)
        h.disconnect()
        time.sleep(1.0)
        h2 = self.sbx.commands.connect(h.pid)
        deadline = time.monotonic() + 10
        while "end" not in h2.stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(h2.kill())
        with self.assertRaises(CommandExitError) as cm:
            h2.wait(timeout=10)
        res = cm.exception.result
        kept = len(res.stdout_bytes)
        self.assertTrue(res.stdout.endswith("\nend\n"))
        self.assertLessEqual(kept, 1 << 20)
        self.assertGreaterEqual(kept, (1 << 20) - 64 * 1024)
        self.assertEqual(res.stdout_dropped + kept, 3145728 + 5)

    def test_unread_handle_queue_is_bounded(self):
        keep = commands.QUEUE_KEEP
        commands.QUEUE_KEEP = 128 * 1024
        try:
            h = self.sbx.commands.run("head -c 2097152 /dev/zero | tr '\\0' c", background=True)
            h.wait(timeout=20)
        finally:
            commands.QUEUE_KEEP = keep
        self.assertLessEqual(h._out.queued, 128 * 1024 + 65536)
        self.assertGreater(h._out.queue_dropped, 0)
        queued = h._out.queued
        self.assertEqual(sum(len(x or y) for x, y in h), queued)

    def test_amberctl_ps_and_kill(self):
        ctl = os.path.join(REPO, "build", "amberctl")
        if not os.access(ctl, os.X_OK):
            self.skipTest("build/amberctl is missing (make build/amberctl)")
        run = lambda *a: subprocess.run([ctl] + list(a), stdout=subprocess.PIPE,  # noqa: E731
                                        stderr=subprocess.PIPE, timeout=30)
        h = self.sbx.commands.run(["sleep", "30"], background=True, cwd="/tmp")
        r = run("ps", "--vsock", self.sbx.vsock_sock, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        procs = {p["pid"]: p for p in __import__("json").loads(r.stdout)}
        self.assertEqual((procs[h.pid]["args"], procs[h.pid]["cwd"]), (["sleep", "30"], "/tmp"))
        r = run("ps", "--vsock", self.sbx.vsock_sock)
        self.assertIn(b"%d" % h.pid, r.stdout)
        self.assertIn(b"sleep 30", r.stdout)
        r = run("kill", "--vsock", self.sbx.vsock_sock, "--signal", "15", str(h.pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(CommandExitError) as cm:
            h.wait(timeout=10)
        self.assertEqual(cm.exception.exit_code, -15)
        r = run("kill", "--vsock", self.sbx.vsock_sock, "4000000")
        self.assertEqual(r.returncode, 3)
        self.assertIn(b"no background command with pid 4000000", r.stderr)
        for bad in (["kill", "--vsock", self.sbx.vsock_sock, "0"], ["kill", "--vsock", self.sbx.vsock_sock],
                    ["kill", "--vsock", self.sbx.vsock_sock, "--signal", "99", "5"]):
            self.assertEqual(run(*bad).returncode, 2, bad)


if __name__ == "__main__":
    unittest.main()
