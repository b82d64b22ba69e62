"""e2e tests of the guest PTY and watch_dir (issue 18) on a real guest: sbx.pty (input, resize in
the session and by pid, reattach, kill), `amberctl exec -t` driven through a real terminal by
tmux (tests/agent/tmux_pty.py: typing, window size, resize, exit status, the terminal restored),
and sbx.files.watch_dir (inotify in the guest). One sandbox for the module."""
import os
import shutil
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))
sys.path.insert(0, os.path.join(REPO, "tests", "agent"))

import harness  # noqa: E402
import util_amber as U  # noqa: E402
import tmux_pty  # noqa: E402
from amber import CommandExitError, CommandNotFoundError, SandboxClientError, timeout_scale  # noqa: E402

_ROOT = None
_SBX = None
CTL = os.path.join(REPO, "build", "amberctl")


def setUpModule():
    global _ROOT, _SBX
    _ROOT, _SBX = U.start_shared_sandbox("pty")


def tearDownModule():
    U.end_shared_sandbox("pty", _ROOT, _SBX)


def read_until(h, needle, limit_s):
    """The handle's queued output, decoded, until needle shows up or limit_s passes."""
    seen, end, o = b"", time.monotonic() + limit_s, h._out
    while needle.encode() not in seen and time.monotonic() < end:
        with o.cond:
            if not o.queue:
                if o.done:
                    break
                o.cond.wait(0.2)
                continue
            _t, data = o.queue.popleft()
            o.queued -= len(data)
        seen += data
    return seen.decode("utf-8", "replace")


def keep_console(name):
    """Copy the guest console next to the e2e logs, and print its tail (a guest that died)."""
    try:
        with open(_SBX.console_path, "rb") as f:
            data = f.read()
    except OSError as e:
        print("  [e2e] no console of %s: %s" % (_SBX.id, e))
        return
    log_dir = os.environ.get("AMBER_E2E_LOGDIR")
    if log_dir:
        with open(os.path.join(log_dir, "pty-%s.console.log" % name), "wb") as f:
            f.write(data)
    print("  [e2e] console tail after %s:\n%s" % (name, data[-1500:].decode("utf-8", "replace")))


class TestAPtyE2E(unittest.TestCase):
    def tearDown(self):
        keep_console(self._testMethodName)

    def test_sdk_pty_shell(self):
        limit = 20 * timeout_scale()
        h = _SBX.pty.create(cols=100, rows=30)
        h.send_input("stty size; test -t 0 && echo IS_$((6*7))\n")
        out = read_until(h, "IS_42", limit)
        self.assertIn("30 100", out)
        self.assertIn("IS_42", out)
        h.resize(132, 43)
        h.send_input("stty size\n")
        self.assertIn("43 132", read_until(h, "43 132", limit))
        _SBX.pty.resize(h.pid, 90, 33)
        h.send_input("stty size\n")
        self.assertIn("33 90", read_until(h, "33 90", limit))
        h.send_input("echo mark-$((1+1)); exit 4\n")
        with self.assertRaises(CommandExitError) as cm:
            h.wait(timeout=limit)
        self.assertEqual(cm.exception.exit_code, 4)

    def test_sdk_pty_reattach_kill_and_bad_input(self):
        limit = 20 * timeout_scale()
        h = _SBX.pty.create(cmd="echo marker-$((40+2)); exec sleep 1000")
        self.assertIn("marker-42", read_until(h, "marker-42", limit))
        h.disconnect()
        h2 = _SBX.pty.connect(h.pid)
        self.assertIn("marker-42", read_until(h2, "marker-42", limit))
        self.assertTrue(_SBX.pty.kill(h.pid))
        with self.assertRaises(CommandExitError):
            h2.wait(timeout=limit)
        with self.assertRaises(CommandNotFoundError):
            _SBX.pty.resize(4000000, 80, 24)
        with self.assertRaises(SandboxClientError):
            _SBX.pty.create(cols=0, rows=24)


class TestBWatchE2E(unittest.TestCase):
    def test_watch_dir_in_the_guest(self):
        limit = 20 * timeout_scale()
        _SBX.files.make_dir("/tmp/watched/sub")
        seen = []
        h = _SBX.files.watch_dir("/tmp/watched", on_event=seen.append, recursive=True)
        self.assertEqual(h.dirs_watched, 2)
        _SBX.files.write("/tmp/watched/a.txt", "one")
        _SBX.commands.run("echo more >> /tmp/watched/a.txt; touch /tmp/watched/sub/deep; "
                          "mv /tmp/watched/a.txt /tmp/watched/b.txt; rm /tmp/watched/b.txt")
        end = time.monotonic() + limit
        while ("remove", "b.txt") not in [(e.type, e.name) for e in seen] and time.monotonic() < end:
            time.sleep(0.1)
        got = [(e.type, e.name) for e in seen]
        for want in (("create", "a.txt"), ("write", "a.txt"), ("create", "sub/deep"),
                     ("rename", "a.txt"), ("create", "b.txt"), ("remove", "b.txt")):
            self.assertIn(want, got)
        h.stop()
        self.assertIsNone(h.error)
        _SBX.files.remove("/tmp/watched")


class TestCAmberctlTtyE2E(unittest.TestCase):
    def tearDown(self):
        keep_console(self._testMethodName)

    def test_a_exec_t_without_a_terminal(self):
        import subprocess
        r = subprocess.run([CTL, "exec", "-t", "--vsock", _SBX.vsock_sock, "--", "sh", "-c",
                            "stty size; echo pty-ok"], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60 * timeout_scale())
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        self.assertIn(b"24 80", r.stdout)
        self.assertIn(b"pty-ok", r.stdout)
        r = subprocess.run([CTL, "exec", "-t", "--vsock", _SBX.vsock_sock, "--", "sh", "-i", "-c",
                            "echo interactive-ok"], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60 * timeout_scale())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"interactive-ok", r.stdout)

    def test_b_amberctl_exec_t_in_tmux(self):
        if not shutil.which("tmux"):
            self.skipTest("tmux is not installed (scripts/setup.sh lists it)")
        fails = tmux_pty.run(CTL, ["--vsock", _SBX.vsock_sock], scale=2.0)
        self.assertEqual(fails, 0, "see the tmux: lines above")


if __name__ == "__main__":
    unittest.main()
