"""sbx.files.watch_dir against tests/fake_amber.py (a real amber-agent on a Unix socket, so the
"guest" directory is a host temporary directory): events, recursion, stop, bounds, bad input."""
import os
import shutil
import tempfile
import time
import unittest

from fakeenv import needs_agent  # noqa: F401 (puts the SDK on sys.path)

from amber import SandboxFileNotFoundError, SandboxFileTypeError, watch  # noqa: E402

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


def wait_for(pred, limit_s=5):
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class TestWatch(fakeenv.SharedSandboxCase):
    RUNTIME_SUB = "rt"

    def setUp(self):
        self.d = tempfile.mkdtemp(dir=self.root)

    def test_callback_events_and_stop(self):
        seen = []
        h = self.sbx.files.watch_dir(self.d, on_event=seen.append)
        self.sbx.files.write(self.d + "/f.txt", "hello")  # a temporary file, renamed over f.txt
        self.sbx.files.make_dir(self.d + "/sub")
        self.sbx.files.remove(self.d + "/f.txt")
        self.assertTrue(wait_for(lambda: ("remove", "f.txt") in [(e.type, e.name) for e in seen]), seen)
        names = [(e.type, e.name) for e in seen]
        self.assertIn(("create", "f.txt"), names)  # moved in under its name
        self.assertIn(("create", "sub"), names)
        self.assertTrue([e for e in seen if e.name == "sub"][0].is_dir)
        h.stop()
        self.assertTrue(h.ended)
        self.assertIsNone(h.error)
        n = len(seen)
        open(os.path.join(self.d, "after"), "w").close()
        time.sleep(0.3)
        self.assertEqual(len(seen), n, "no events after stop()")

    def test_queue_recursive_and_bound(self):
        os.mkdir(os.path.join(self.d, "a"))
        old = watch.MAX_QUEUED
        watch.MAX_QUEUED = 5
        try:
            with self.sbx.files.watch_dir(self.d, recursive=True) as h:
                self.assertEqual(h.dirs_watched, 2)
                open(os.path.join(self.d, "a", "inner"), "w").close()
                self.assertTrue(wait_for(lambda: h._queue), "no event from a subdirectory")
                self.assertEqual([(e.type, e.name) for e in h.get_new_events()], [("create", "a/inner")])
                for i in range(20):
                    open(os.path.join(self.d, "n%d" % i), "w").close()
                self.assertTrue(wait_for(lambda: h.dropped >= 15), h.dropped)
                evs = h.get_new_events()
                self.assertEqual(len(evs), 5)
                self.assertEqual(evs[-1].name, "n19")
        finally:
            watch.MAX_QUEUED = old

    def test_directory_removed_ends_the_watch(self):
        h = self.sbx.files.watch_dir(self.d)
        shutil.rmtree(self.d)
        self.assertTrue(wait_for(lambda: h.ended))
        self.assertIn(("remove", "."), [(e.type, e.name) for e in h.get_new_events()])
        self.assertIsNone(h.error)

    def test_bad_input(self):
        with self.assertRaises(SandboxFileNotFoundError):
            self.sbx.files.watch_dir(self.d + "/missing")
        open(os.path.join(self.d, "file"), "w").close()
        with self.assertRaises(SandboxFileTypeError):
            self.sbx.files.watch_dir(self.d + "/file")
        with self.assertRaises(Exception) as cm:
            self.sbx.files.watch_dir("relative/path")
        self.assertIn("absolute", str(cm.exception))


@needs_agent
class TestAsyncWatch(unittest.TestCase):
    def test_async_watch(self):
        import asyncio
        from amber import AsyncSandbox

        root = tempfile.mkdtemp(prefix="amber-awatch-test-")
        d = os.path.join(root, "w")
        os.mkdir(d)

        async def main():
            sbx = await AsyncSandbox.create(runtime_dir=os.path.join(root, "rt"))
            try:
                h = await sbx.files.watch_dir(d)
                open(os.path.join(d, "one"), "w").close()
                ev = await asyncio.wait_for(h.__anext__(), 5)
                self.assertEqual((ev.type, ev.name), ("create", "one"))
                await h.stop()
                async def rest_of():
                    return [e async for e in h]
                rest = await asyncio.wait_for(rest_of(), 5)  # stop() ends the iteration
                self.assertTrue(h.ended)
                self.assertTrue(all(e.name == "one" for e in rest), rest)
                with self.assertRaises(SandboxFileNotFoundError):
                    await sbx.files.watch_dir(d + "/missing")
            finally:
                await sbx.delete()

        try:
            asyncio.run(main())
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
