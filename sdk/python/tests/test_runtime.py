"""Unit tests of the runtime directory: ids, roots, flock liveness, stale detection, sparse copy,
timeout scale, and the HTTP client over a Unix socket. No VM needed."""
import http.server
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from amber import api, runtime  # noqa: E402

HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"%d\n" % os.getpid())
print("locked", flush=True)
time.sleep(60)
"""


class TestIds(unittest.TestCase):
    def test_valid_ids(self):
        for good in ("a", "sbx-0123abcd", "A_b-C", "x" * 64):
            self.assertTrue(runtime.valid_id(good), "%r should be a valid id" % good)
        for bad in ("", "x" * 65, "a/b", "..", ".hidden", "a b", "é", None, 5, "a\n"):
            self.assertFalse(runtime.valid_id(bad), "%r should be refused" % (bad,))

    def test_root_prefers_xdg_runtime_dir(self):
        self.assertEqual(runtime.runtime_root({"XDG_RUNTIME_DIR": "/run/user/7"}), "/run/user/7/amber")
        self.assertEqual(runtime.runtime_root({}), "/tmp/amber-%d" % os.getuid())

    def test_timeout_scale_env_wins(self):
        self.assertEqual(runtime.timeout_scale({"AMBER_TIMEOUT_SCALE": "3"}), 3.0)
        self.assertIn(runtime.timeout_scale({}), (1.0, 10.0))


class TestLiveness(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, True)

    def sandbox_dir(self, name):
        d = os.path.join(self.root, name)
        os.mkdir(d)
        return d

    def hold_lock(self, path):
        p = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b"locked\n")

        def stop():
            p.kill()
            p.wait()
            p.stdout.close()
        self.addCleanup(stop)
        return p

    def test_locked_pid_file_is_alive_and_unlocked_is_stale(self):
        d = self.sandbox_dir("a")
        p = self.hold_lock(os.path.join(d, "amber.pid"))
        self.assertEqual(runtime.probe(d), runtime.ALIVE)
        self.assertEqual(runtime.read_pid(d), p.pid)
        self.assertEqual(runtime.probe(d), runtime.ALIVE, "probing must not disturb amber's lock")
        p.kill()
        p.wait()
        self.assertEqual(runtime.probe(d), runtime.STALE, "a free lock means amber is gone")

    def test_starting_lock_and_young_directory_are_starting(self):
        d = self.sandbox_dir("b")
        self.assertEqual(runtime.probe(d), runtime.STARTING, "young directory without amber.pid")
        old = time.time() - runtime.STARTING_GRACE_S - 5
        os.utime(d, (old, old))
        self.assertEqual(runtime.probe(d), runtime.STALE, "old directory without amber.pid")
        with runtime.FileLock(os.path.join(d, "starting.lock")):
            os.utime(d, (old, old))
            self.assertEqual(runtime.probe(d), runtime.STARTING, "the creator's starting.lock is held")
        self.assertEqual(runtime.probe(os.path.join(self.root, "nope")), runtime.MISSING)

    def test_count_live_counts_alive_and_starting_only(self):
        for name in ("live1", "live2"):
            self.hold_lock(os.path.join(self.sandbox_dir(name), "amber.pid"))
        stale = self.sandbox_dir("stale")
        open(os.path.join(stale, "amber.pid"), "w").close()
        self.sandbox_dir(".hidden")  # not an id: ignored
        os.mkdir(os.path.join(self.root, "bad id"))
        self.assertEqual(runtime.list_ids(self.root), ["live1", "live2", "stale"])
        self.assertEqual(runtime.count_live(self.root), 2)

    def test_exit_record(self):
        d = self.sandbox_dir("c")
        self.assertIsNone(runtime.exit_record(d))
        self.assertIn("without writing exit.json", runtime.describe_exit(None))
        with open(os.path.join(d, "exit.json"), "w") as f:
            f.write('{"reason": "guest power-off", "status": 0}')
        self.assertEqual(runtime.describe_exit(runtime.exit_record(d)), "guest power-off (status 0)")
        with open(os.path.join(d, "exit.json"), "w") as f:
            f.write("{not json")
        self.assertIsNone(runtime.exit_record(d))

    def test_file_lock_excludes_others(self):
        path = os.path.join(self.root, ".lock")
        with runtime.FileLock(path):
            with self.assertRaises(BlockingIOError):
                with runtime.FileLock(path, blocking=False):
                    pass
        with runtime.FileLock(path, blocking=False):
            pass


class TestSparseCopy(unittest.TestCase):
    def test_copy_keeps_content_and_holes(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        src = os.path.join(d, "src")
        with open(src, "wb") as f:
            f.truncate(64 << 20)
            f.seek(1 << 20)
            f.write(b"start")
            f.seek((40 << 20) + 3)
            f.write(os.urandom(5000))
            f.seek((10 << 20))
            f.write(bytes(3 << 20))  # explicit zeros: may stay a hole in the copy
        for fn in (runtime.sparse_copy, runtime._sparse_copy_py):
            dst = os.path.join(d, "dst-" + fn.__name__)
            fn(src, dst)
            with open(src, "rb") as a, open(dst, "rb") as b:
                self.assertTrue(a.read() == b.read(), "%s changed the content" % fn.__name__)
            st = os.stat(dst)
            self.assertEqual(st.st_size, 64 << 20)
            self.assertLess(st.st_blocks * 512, 8 << 20, "%s did not keep holes" % fn.__name__)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def address_string(self):
        return "unix"

    def _reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def setup(self):
        super().setup()
        self.server.conns = getattr(self.server, "conns", 0) + 1

    def do_GET(self):
        self._reply(200, '{"id": "x", "state": "Running"}')

    def do_PUT(self):
        # Answers, then closes the connection without saying so (as a server dropping an idle
        # keep-alive connection would), so the client's next request meets a closed socket.
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(200, "{}")
        self.close_connection = True

    def do_POST(self):
        self.server.seen.append((self.path, self.headers.get("Content-Length")))
        if self.path == "/pause":
            self._reply(409, '{"fault_message": "sandbox x is already paused"}')
        else:
            self._reply(500, "plain text")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TestHttpClient(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sock = os.path.join(self.dir, "api.sock")
        self.srv = _Server(self.sock, _Handler)
        self.srv.seen = []
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.addCleanup(self.srv.server_close)
        self.addCleanup(self.srv.shutdown)

    def test_get_parses_json(self):
        r = api.request(self.sock, "GET", "/")
        self.assertEqual((r.status, r.body), (200, {"id": "x", "state": "Running"}))

    def test_error_bodies(self):
        r = api.request(self.sock, "POST", "/pause")
        self.assertEqual((r.status, r.fault), (409, "sandbox x is already paused"))
        self.assertEqual(self.srv.seen, [("/pause", "0")], "a bodiless POST sends Content-Length: 0")
        r = api.request(self.sock, "POST", "/other")
        self.assertEqual((r.status, r.body, r.fault), (500, None, "plain text"))

    def test_keep_alive_client_reuses_one_connection(self):
        c = api.Client(self.sock)
        self.addCleanup(c.close)
        for _ in range(3):
            self.assertEqual(c.call("GET", "/").body, {"id": "x", "state": "Running"})
        self.assertEqual(self.srv.conns, 1)

    def test_keep_alive_client_resends_once_on_a_closed_connection(self):
        c = api.Client(self.sock)
        self.addCleanup(c.close)
        self.assertEqual(c.call("PUT", "/x", {"a": 1}).status, 200)
        time.sleep(0.1)  # the server has closed its end by now
        self.assertEqual(c.call("GET", "/").status, 200)
        self.assertEqual(self.srv.conns, 2)

    def test_missing_socket_raises_oserror(self):
        with self.assertRaises(FileNotFoundError):
            api.request(os.path.join(self.dir, "nope.sock"), "GET", "/")


if __name__ == "__main__":
    unittest.main()
