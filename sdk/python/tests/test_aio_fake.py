"""AsyncSandbox against tests/fake_amber.py: the same surface on one event loop, with no thread
started per call (the thread count is checked while calls run concurrently)."""
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest

from fakeenv import AGENT, FAKE, HERE, REPO, SDK, needs_agent  # noqa: E402,F401 (puts the SDK on sys.path)

from amber import (AsyncSandbox, CommandExitError, CommandNotFoundError, SandboxClientError,  # noqa: E402
                   SandboxFileNotFoundError, SandboxTimeoutError, StdinClosedError)

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


@needs_agent
class TestAsync(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="amber-aio-test-")
        self.g = tempfile.mkdtemp(prefix="amber-aio-guest-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.addCleanup(shutil.rmtree, self.g, True)

    def test_surface_on_one_loop(self):
        async def main():
            sbx = await AsyncSandbox.create(runtime_dir=self.root, timeout=60, metadata={"k": "v"})
            try:
                seen = []
                t0 = time.monotonic()
                r = await sbx.commands.run("echo a; sleep 0.6; echo b", on_stdout=lambda s: seen.append(
                    (time.monotonic() - t0, s)))
                self.assertEqual(r.stdout, "a\nb\n")
                self.assertLess(seen[0][0], 0.5, "not streamed")
                with self.assertRaises(CommandExitError):
                    await sbx.commands.run("exit 2")
                with self.assertRaises(SandboxTimeoutError):
                    await sbx.commands.run("sleep 5", timeout=0.3)
                with self.assertRaises(SandboxClientError):
                    await sbx.commands.run("true", timeout=0)

                h = await sbx.commands.run("cat; echo end", background=True)
                self.assertIn(h.pid, [p.pid for p in await sbx.commands.list()])
                await h.send_stdin("in\n")
                await h.close_stdin()
                with self.assertRaises(StdinClosedError):
                    await h.send_stdin("x")
                res = await h.wait(timeout=10)
                self.assertEqual(res.stdout, "in\nend\n")
                with self.assertRaises(CommandNotFoundError):
                    await sbx.commands.connect(4000000)
                h = await sbx.commands.run("echo up; sleep 30", background=True)
                h2 = await sbx.commands.connect(h.pid)
                out = []
                async for o, _e in h2:
                    out.append(o)
                    break
                self.assertEqual(out, ["up\n"])
                self.assertTrue(await h2.kill())

                # Several calls at once on the one loop: no thread per call.
                base = threading.active_count()
                peak = 0

                async def count():
                    nonlocal peak
                    for _ in range(20):
                        peak = max(peak, threading.active_count())
                        await asyncio.sleep(0.02)
                await asyncio.gather(count(), *(sbx.commands.run("sleep 0.2; echo %d" % i) for i in range(5)))
                self.assertEqual(peak, base, "threads were started per call")

                p = self.g + "/f.bin"
                info = await sbx.files.write(p, (b"%d" % i for i in range(1000)))
                self.assertEqual(info.size, len(b"".join(b"%d" % i for i in range(1000))))
                got = b""
                async for chunk in await sbx.files.read(p, format="stream"):
                    got += chunk
                self.assertEqual(got, b"".join(b"%d" % i for i in range(1000)))
                self.assertEqual(await sbx.files.read(p, format="bytes"), got)
                self.assertTrue(await sbx.files.make_dir(self.g + "/d/e"))
                self.assertEqual([e.name for e in await sbx.files.list(self.g)], ["d", "f.bin"])
                self.assertEqual((await sbx.files.rename(p, self.g + "/g.bin")).name, "g.bin")
                self.assertFalse(await sbx.files.exists(p))
                with self.assertRaises(SandboxFileNotFoundError):
                    await sbx.files.read(p)
                await sbx.files.remove(self.g + "/d")

                self.assertLessEqual((await sbx.get_timeout())["timeout_s_left"], 60)
                await sbx.set_timeout(30, on_timeout="pause")
                self.assertEqual((await sbx.get_timeout())["on_timeout"], "pause")
                await sbx.pause()
                self.assertEqual([a.id for a in await AsyncSandbox.list(runtime_dir=self.root, state="paused",
                                                                        metadata={"k": "v"})], [sbx.id])
                await sbx.resume()
            finally:
                d = sbx._s.dir
                await sbx.delete()
            self.assertFalse(os.path.exists(d))
        asyncio.run(main())


if __name__ == "__main__":
    unittest.main()
