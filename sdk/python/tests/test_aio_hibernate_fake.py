"""AsyncSandbox's hibernate, templates and fork against tests/fake_amber.py: the same store and
flows as Sandbox's (test_hibernate_fake.py), run on one event loop. Only the default executor's
threads (file copies and fsynced writes) may appear while they run, and the loop keeps ticking (the fake's restored agent answers only after a delay).
The guest identity step is replaced by a recorder: the fake's agent runs on this host."""
import asyncio
import os
import threading
import time
import unittest

import fakeenv  # noqa: E402

from amber import AsyncSandbox, Sandbox, SandboxClientError, SandboxNotFoundError  # noqa: E402
from amber import store, template  # noqa: E402

_saved_identity = template.set_identity


def setUpModule():
    fakeenv.set_env()


def tearDownModule():
    fakeenv.restore_env()
    template.set_identity = _saved_identity


class LoopWatch:
    """Runs beside the calls under test: the longest gap between 10 ms ticks of the loop, and
    every thread other than the main one seen meanwhile."""

    def __init__(self):
        self.gap, self.threads, self.stop = 0.0, set(), False

    async def run(self):
        last = time.monotonic()
        while not self.stop:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.gap = max(self.gap, now - last)
            last = now
            self.threads |= {t.name for t in threading.enumerate() if t is not threading.main_thread()}

    async def around(self, coro):
        task = asyncio.ensure_future(self.run())
        try:
            return await coro
        finally:
            self.stop = True
            await task


class TestAsyncHibernate(fakeenv.StoreCase):
    PREFIX = "amber-aio-hib"
    # A restored agent answers 0.6 s after the load: a blocking wait would stall the loop.
    ENV_EXTRA = {"FAKE_AMBER_RESTORE_DELAY_S": "0.6"}

    def assert_loop_only(self, watch, what):
        self.assertLess(watch.gap, 0.4, "%s blocked the event loop for %.2f s" % (what, watch.gap))
        others = sorted(n for n in watch.threads if not n.startswith("asyncio_"))
        self.assertEqual(others, [], "%s started threads other than the loop's executor" % what)

    def test_hibernate_resume_connect(self):
        async def main():
            sbx = await AsyncSandbox.create(runtime_dir=self.root, timeout=600)
            f = os.path.join(self.work, "kept")
            await sbx.commands.run("echo 42 > %s" % f)
            pid = sbx._s.pid
            watch = LoopWatch()
            rec = await watch.around(sbx.pause(keep_memory=False))
            self.assert_loop_only(watch, "pause(keep_memory=False)")
            self.assertEqual((rec["paused"], rec["memory"], rec["sandbox_id"]), (True, "disk", sbx.id))
            self.assertTrue(rec["paused_at"])
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)
            for name in ("vm.snap", "vm.mem", "rootfs.ext4", "hibernated.json", "config.json"):
                self.assertTrue(os.path.isfile(os.path.join(self.pd(sbx.id), name)), name)
            self.assertEqual(await sbx.state(), "Hibernated")
            listed = {a.id: await a.state() for a in await AsyncSandbox.list(runtime_dir=self.root)}
            self.assertEqual(listed, {sbx.id: "Hibernated"})
            self.assertEqual([a.id for a in await AsyncSandbox.list(runtime_dir=self.root, state="hibernated")],
                             [sbx.id])
            with self.assertRaises(SandboxClientError) as cm:
                await sbx.commands.run("true")
            self.assertEqual(cm.exception.status, 409)
            self.assertIn("hibernated", str(cm.exception))

            watch = LoopWatch()
            r = await watch.around(sbx.resume())
            self.assert_loop_only(watch, "resume()")
            self.assertEqual(r["memory"], "disk")
            self.assertEqual(await sbx.state(), "Running")
            self.assertEqual((await sbx.commands.run("cat %s" % f)).stdout.strip(), "42")
            self.assertEqual((await sbx.info())["fake_load"]["mem"], os.path.join(self.pd(sbx.id), "vm.mem"))
            for name in ("vm.snap", "vm.mem", "hibernated.json"):
                self.assertFalse(os.path.exists(os.path.join(self.pd(sbx.id), name)), name + " stayed")
            self.assertTrue(0 < (await sbx.get_timeout())["timeout_s_left"] <= 600, "the deadline was not carried")

            # connect() from what knows only the id resumes it; so does the blocking SDK's.
            await sbx.pause(keep_memory=False)
            again = await AsyncSandbox.connect(sbx.id, runtime_dir=self.root)
            self.assertEqual(await again.state(), "Running")
            self.assertEqual((await again.commands.run("cat %s" % f)).stdout.strip(), "42")
            await again.pause(keep_memory=False)
            self.assertEqual(Sandbox.connect(sbx.id, runtime_dir=self.root).state(), "Running")
            await again.pause(keep_memory=False)
            await again.delete()
            self.assertFalse(os.path.exists(self.pd(sbx.id)), "delete left the hibernated files")
        asyncio.run(main())

    def test_disk_full_and_corrupt_snapshot(self):
        async def main():
            os.environ["FAKE_AMBER_SNAP_ENOSPC"] = "1"  # read by the fake amber when it starts
            sbx = await AsyncSandbox.create(runtime_dir=self.root)
            os.environ.pop("FAKE_AMBER_SNAP_ENOSPC")
            with self.assertRaises(SandboxClientError) as cm:
                await sbx.pause(keep_memory=False)
            self.assertEqual(cm.exception.status, 507)
            self.assertIn("still paused in memory", str(cm.exception))
            self.assertEqual(await sbx.state(), "Paused")
            self.assertFalse(store.is_hibernated(self.pd(sbx.id)))
            self.assertFalse(os.path.exists(os.path.join(self.pd(sbx.id), "vm.mem")), "a partial file stayed")
            await sbx.resume()
            self.assertEqual((await sbx.commands.run("echo ok")).stdout.strip(), "ok")

            sbx = await AsyncSandbox.create(runtime_dir=self.root)
            await sbx.pause(keep_memory=False)
            snap = os.path.join(self.pd(sbx.id), "vm.snap")
            with open(snap, "wb") as f:
                f.write(b"\0garbage")
            with self.assertRaises(SandboxNotFoundError) as cm:
                await sbx.resume()
            self.assertIn(snap, str(cm.exception))
            self.assertEqual(await sbx.state(), "Hibernated", "a failed resume must keep the files")
        asyncio.run(main())

    def test_templates_and_fork(self):
        async def main():
            parent = await AsyncSandbox.create(runtime_dir=self.root, metadata={"job": "7"})
            rec = await parent.snapshot_template("base")
            self.assertEqual(rec["source_id"], parent.id)
            self.assertEqual(await parent.state(), "Running", "the source stays running")
            self.assertEqual([t["name"] for t in AsyncSandbox.list_templates()], ["base"])
            with self.assertRaises(SandboxClientError) as cm:
                await parent.snapshot_template("base")
            self.assertEqual(cm.exception.status, 409)

            watch = LoopWatch()
            kids = await watch.around(asyncio.gather(
                *(AsyncSandbox.create(template="base", runtime_dir=self.root, timeout=300) for _ in range(3))))
            self.assert_loop_only(watch, "3 create(template=) at once")
            self.assertTrue(all(isinstance(k, AsyncSandbox) for k in kids))
            loads = [(await k.info())["fake_load"] for k in kids]
            self.assertEqual({ld["mem"] for ld in loads}, {os.path.join(store.template_dir("base"), "vm.mem")})
            self.assertEqual(len({ld["vsock_override"]["guest_cid"] for ld in loads}), 3, "CIDs repeat")
            self.assertEqual(sorted(i[0] for i in self.identities), sorted(k.id for k in kids))
            self.assertEqual(len({i[2] for i in self.identities}), 3, "machine-ids repeat")
            for k in kids:
                self.assertEqual(k._s.config["template"], "base")
                self.assertTrue(0 < (await k.get_timeout())["timeout_s_left"] <= 300)
                self.assertEqual((await k.commands.run("echo child")).stdout.strip(), "child")
            with self.assertRaises(SandboxClientError) as cm:
                AsyncSandbox.delete_template("base", runtime_dir=self.root)
            self.assertEqual(cm.exception.status, 409)
            await asyncio.gather(*(k.delete() for k in kids))
            for k in kids:
                self.assertFalse(os.path.exists(self.pd(k.id)), "a child's persistent directory stayed")
            AsyncSandbox.delete_template("base", runtime_dir=self.root)
            self.assertEqual(AsyncSandbox.list_templates(), [])
            with self.assertRaises(SandboxNotFoundError):
                await AsyncSandbox.create(template="base", runtime_dir=self.root)

            watch = LoopWatch()
            forks = await watch.around(parent.fork(n=3))
            self.assert_loop_only(watch, "fork(n=3)")
            self.assertEqual(len({k.id for k in forks} | {parent.id}), 4)
            self.assertEqual(await parent.state(), "Running")
            for k in forks:
                self.assertEqual(k.metadata, {"job": "7"})
                self.assertEqual(k._s.config["forked_from"], parent.id)
                self.assertEqual(await k.state(), "Running")
            self.assertEqual(len(os.listdir(store.forks_root())), 1)
            with self.assertRaises(SandboxClientError):
                await parent.fork(n=0)
            await forks[0].delete()
            self.assertEqual(len(os.listdir(store.forks_root())), 1, "the image went while in use")
            await asyncio.gather(*(k.delete() for k in forks[1:]))
            self.assertEqual(os.listdir(store.forks_root()), [], "an unused fork image stayed")
        asyncio.run(main())


if __name__ == "__main__":
    unittest.main()
