"""sbx.pty against tests/fake_amber.py (a real amber-agent on a Unix socket): a shell on a pty,
input, resize (in the session and by pid), reattach, kill, and bad input."""
import shutil
import tempfile
import time
import unittest

from fakeenv import needs_agent  # noqa: F401 (puts the SDK on sys.path)

from amber import CommandExitError, CommandNotFoundError, SandboxClientError, StdinClosedError  # noqa: E402

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


def read_until(h, needle, limit_s=10):
    """The handle's queued output (bytes, decoded) until needle shows up or limit_s passes."""
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


class TestPty(fakeenv.SharedSandboxCase):

    def test_shell_input_resize_exit(self):
        chunks = []
        h = self.sbx.pty.create(cols=100, rows=30, on_data=chunks.append)
        h.send_input("stty size; echo $TERM; test -t 0 && echo IS_$((6*7))\n")
        out = read_until(h, "IS_42")
        self.assertIn("30 100", out)
        self.assertIn("xterm-256color", out)
        h.resize(132, 43)
        h.send_input(b"stty size\n")
        self.assertIn("43 132", read_until(h, "43 132"))
        self.sbx.pty.resize(h.pid, 90, 33)
        h.send_input("stty size\n")
        self.assertIn("33 90", read_until(h, "33 90"))
        h.send_input("exit 5\n")
        with self.assertRaises(CommandExitError) as cm:
            h.wait(timeout=10)
        self.assertEqual(cm.exception.exit_code, 5)
        self.assertTrue(all(isinstance(c, bytes) for c in chunks) and chunks, "on_data gets bytes")
        with self.assertRaises(StdinClosedError):
            h.send_input("late\n")

    def test_connect_replays_and_kill(self):
        h = self.sbx.pty.create(cmd="echo marker-$((40+2)); exec sleep 100")
        self.assertIn("marker-42", read_until(h, "marker-42"))
        h.disconnect()
        h2 = self.sbx.pty.connect(h.pid)
        self.assertIn("marker-42", read_until(h2, "marker-42"), "the guest replays the kept output")
        h2.send_input("x")
        self.assertTrue(self.sbx.pty.kill(h.pid))
        rest = b"".join(h2)  # iteration ends with the command
        self.assertIsInstance(rest, bytes)
        with self.assertRaises(CommandExitError) as cm:
            h2.wait(timeout=10)
        self.assertEqual(cm.exception.result.signal, 9)

    def test_bad_input(self):
        for cols, rows in ((0, 24), (80, 0), (4097, 24), (80, 10 ** 6), ("80", 24), (True, 24)):
            with self.assertRaises(SandboxClientError):
                self.sbx.pty.create(cols=cols, rows=rows)
        with self.assertRaises(CommandNotFoundError):
            self.sbx.pty.resize(4000000, 80, 24)
        with self.assertRaises(CommandNotFoundError):
            self.sbx.pty.connect(4000000)
        bg = self.sbx.commands.run("sleep 30", background=True)
        try:
            with self.assertRaises(SandboxClientError) as cm:
                self.sbx.pty.resize(bg.pid, 80, 24)
            self.assertIn("not a pty", str(cm.exception))
        finally:
            bg.kill()
        h = self.sbx.pty.create()
        try:
            with self.assertRaises(SandboxClientError):
                h.resize(0, 10)
        finally:
            h.kill()


@needs_agent
class TestAsyncPty(unittest.TestCase):
    def test_async_pty(self):
        import asyncio
        from amber import AsyncSandbox

        async def main(root):
            sbx = await AsyncSandbox.create(runtime_dir=root)
            try:
                h = await sbx.pty.create(cols=100, rows=30)
                await h.send_input("stty size; echo IS_$((6*7))\n")
                seen = b""
                async for data in h:
                    self.assertIsInstance(data, bytes)
                    seen += data
                    if b"IS_42" in seen:
                        break
                self.assertIn(b"30 100", seen)
                await sbx.pty.resize(h.pid, 77, 22)
                await h.resize(78, 23)
                await h.send_input("stty size; exit 6\n")
                with self.assertRaises(CommandExitError) as cm:
                    await h.wait(timeout=10)
                self.assertEqual(cm.exception.exit_code, 6)
                self.assertIn("23 78", cm.exception.stdout)
                with self.assertRaises(CommandNotFoundError):
                    await sbx.pty.resize(4000000, 80, 24)
            finally:
                await sbx.delete()

        root = tempfile.mkdtemp(prefix="amber-apty-test-")
        try:
            asyncio.run(main(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
