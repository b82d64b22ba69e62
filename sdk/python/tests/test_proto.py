"""Unit tests of the agent protocol codec, and of the client against a real amber-agent on a
Unix socket (skipped when build/amber-agent is missing). No VM needed."""
import functools
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
AGENT = os.path.join(REPO, "build", "amber-agent")

from amber import proto  # noqa: E402


class TestFraming(unittest.TestCase):
    def test_header_layout_is_big_endian(self):
        f = proto.encode_frame(proto.EXEC, 0x01020304, b"abc")
        self.assertEqual(f[:9], b"\x00\x00\x00\x03\x02\x01\x02\x03\x04", "9-byte header: len, type, id")
        self.assertEqual(f[9:], b"abc")

    def test_oversize_and_unknown_type_are_refused_when_encoding(self):
        with self.assertRaises(ValueError):
            proto.encode_frame(proto.DATA, 1, bytes(proto.MAX_PAYLOAD + 1))
        proto.encode_frame(proto.DATA, 1, bytes(proto.MAX_PAYLOAD))  # exactly 1 MiB is fine
        with self.assertRaises(ValueError):
            proto.encode_frame(0x42, 1)

    def test_reader_reassembles_frames_split_at_every_byte(self):
        stream = proto.encode_frame(proto.STDOUT, 7, b"hello") + proto.encode_frame(proto.EOF, 7)
        r = proto.FrameReader()
        got = []
        for i in range(len(stream)):
            r.feed(stream[i:i + 1])
            f = r.next()
            while f is not None:
                got.append(f)
                f = r.next()
        self.assertEqual(got, [(proto.STDOUT, 7, b"hello"), (proto.EOF, 7, b"")])
        self.assertEqual(r.pending(), 0)

    def test_reader_refuses_oversize_length_before_the_payload_arrives(self):
        r = proto.FrameReader()
        r.feed(struct.pack(">IBI", proto.MAX_PAYLOAD + 1, proto.DATA, 1))
        with self.assertRaisesRegex(proto.ProtocolError, "exceeds"):
            r.next()

    def test_reader_refuses_unknown_type(self):
        r = proto.FrameReader()
        r.feed(struct.pack(">IBI", 0, 0x55, 1))
        with self.assertRaisesRegex(proto.ProtocolError, "unknown frame type 0x55"):
            r.next()

    def test_tlv_round_trip_and_typed_getters(self):
        payload = proto.tlv(proto.TAG_EXIT_CODE, 3) + proto.tlv(proto.TAG_MESSAGE, "héllo") + \
            proto.tlv(proto.TAG_ARGV, "a") + proto.tlv(proto.TAG_ARGV, "b")
        t = proto.Tlvs(payload)
        self.assertEqual(t.int(proto.TAG_EXIT_CODE), 3)
        self.assertEqual(t.str(proto.TAG_MESSAGE), "héllo")
        self.assertEqual(t.all(proto.TAG_ARGV), [b"a", b"b"], "repeatable tags keep their order")
        self.assertIsNone(t.int(proto.TAG_SIGNAL))

    def test_truncated_tlvs_are_refused(self):
        good = proto.tlv(proto.TAG_PATH, "/tmp/x")
        for cut in range(1, len(good)):
            with self.assertRaises(proto.ProtocolError, msg="TLV cut at %d bytes was accepted" % cut):
                proto.decode_tlvs(good[:cut])
        with self.assertRaises(proto.ProtocolError):
            proto.Tlvs(proto.tlv(proto.TAG_SIZE, b"\x01\x02")).int(proto.TAG_SIZE)  # ints are 8 bytes

    def test_tlv_string_limits(self):
        with self.assertRaises(ValueError):
            proto.tlv(proto.TAG_PATH, "a\0b")
        with self.assertRaises(ValueError):
            proto.tlv(proto.TAG_PATH, "x" * (proto.MAX_STR + 1))
        proto.tlv(proto.TAG_PATH, "x" * proto.MAX_STR)

    def test_exec_request_shell_vs_argv(self):
        t = proto.Tlvs(proto.exec_request("echo hi", env={"A": "1"}, cwd="/tmp", timeout_ms=1500))
        self.assertEqual(t.str(proto.TAG_SHELL), "echo hi")
        self.assertEqual(t.all(proto.TAG_ARGV), [])
        self.assertEqual(t.all(proto.TAG_ENV), [b"A=1"])
        self.assertEqual(t.str(proto.TAG_CWD), "/tmp")
        self.assertEqual(t.int(proto.TAG_TIMEOUT_MS), 1500)
        t = proto.Tlvs(proto.exec_request(["ls", "-l", "/"]))
        self.assertEqual(t.all(proto.TAG_ARGV), [b"ls", b"-l", b"/"])
        self.assertIsNone(t.raw(proto.TAG_SHELL))
        for bad in ([], [""]):
            with self.assertRaises(ValueError):
                proto.exec_request(bad)
        with self.assertRaises(ValueError):
            proto.exec_request("x", env={"A=B": "1"})

    def test_exec_result_fields(self):
        r = proto.ExecResult(b"out\xff", b"err", exit_code=0)
        self.assertEqual(r.stdout, "out\ufffd", "stdout decodes UTF-8 with replacement")
        self.assertEqual(r.stdout_bytes, b"out\xff")
        self.assertEqual((r.returncode, r.exit_code), (0, 0))
        r = proto.ExecResult(signal=9)
        self.assertEqual(r.returncode, -9, "a signal gives -N as subprocess does")



class TestRequest(unittest.TestCase):
    """_Conn.request: one request, its RESULT's Tlvs, and the connection closed when it fails."""

    def answer(self, ftype, payload, keep=False):
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        c = self.conn = proto._Conn(a, b"", time.monotonic() + 10, None)
        b.sendall(proto.encode_frame(ftype, 1, payload))
        try:
            return c, c.request(proto.KILL, proto.tlv(proto.TAG_PID, 7), "kill", keep=keep)
        finally:
            sent = b.recv(64)
            self.assertEqual(sent, proto.encode_frame(proto.KILL, 1, proto.tlv(proto.TAG_PID, 7)))

    def test_result_is_returned_and_the_connection_closed(self):
        c, t = self.answer(proto.RESULT, proto.tlv(proto.TAG_SIZE, 42))
        self.assertEqual(t.int(proto.TAG_SIZE), 42)
        self.assertEqual(c.sock.fileno(), -1, "request() without keep must close the connection")

    def test_keep_leaves_it_open(self):
        c, _ = self.answer(proto.RESULT, b"", keep=True)
        self.assertNotEqual(c.sock.fileno(), -1)
        c.close()

    def test_another_frame_type_is_a_protocol_error_and_closes(self):
        for keep in (False, True):
            with self.assertRaises(proto.ProtocolError) as cm:
                self.answer(proto.STARTED, proto.tlv(proto.TAG_PID, 1), keep=keep)
            self.assertIn("kill: expected frame type 0x20, got 0x24", str(cm.exception))
            self.assertEqual(self.conn.sock.fileno(), -1, "a failed request must close the connection")

    def test_an_error_frame_raises_the_agents_error(self):
        with self.assertRaises(proto.AgentError) as cm:
            self.answer(proto.ERROR, proto.tlv(proto.TAG_ERRNO, 3) + proto.tlv(proto.TAG_MESSAGE, "no such pid"))
        self.assertIn("no such pid", str(cm.exception))

class FakePeer:
    """A Unix socket whose accepted connection runs handler(conn) in a thread."""

    def __init__(self, handler):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "s")
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(self.path)
        self.srv.listen(4)
        self.t = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.t.start()

    def _run(self, handler):
        c, _ = self.srv.accept()
        try:
            handler(c)
        finally:
            c.close()

    def close(self):
        self.srv.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class TestClientAgainstFakePeer(unittest.TestCase):
    def client(self, peer, check=None):
        return proto.AgentClient(functools.partial(proto.connect_unix, peer.path), check=check)

    def test_hybrid_handshake(self):
        def h(c):
            self.assertEqual(c.recv(64), b"CONNECT 1024\n")
            c.sendall(b"OK 5000\n" + proto.encode_frame(proto.RESULT, 1, proto.tlv(proto.TAG_PROTO_VERSION, 1)))
            c.recv(64)
        peer = FakePeer(h)
        self.addCleanup(peer.close)
        sock, rest = proto.connect_hybrid_vsock(peer.path, 1024, 2)
        self.addCleanup(sock.close)
        self.assertTrue(rest.startswith(b"\x00\x00\x00\x0e\x20"), "bytes after the OK line are kept")

    def test_hybrid_refusal_is_a_connection_error(self):
        peer = FakePeer(lambda c: c.recv(64))  # closes without OK, like a guest RST
        self.addCleanup(peer.close)
        with self.assertRaises(ConnectionError):
            proto.connect_hybrid_vsock(peer.path, 1024, 2)

    def test_agent_error_frame_raises_agent_error(self):
        def h(c):
            c.recv(1024)
            c.sendall(proto.encode_frame(proto.ERROR, 1, proto.tlv(proto.TAG_ERRNO, 2) +
                                         proto.tlv(proto.TAG_MESSAGE, "open /x: nope")))
        peer = FakePeer(h)
        self.addCleanup(peer.close)
        with self.assertRaises(proto.AgentError) as cm:
            self.client(peer).read_file("/x", timeout=5)
        self.assertEqual((cm.exception.errno, cm.exception.message), (2, "open /x: nope"))

    def test_close_mid_frame_is_a_protocol_error(self):
        def h(c):
            c.recv(1024)
            c.sendall(proto.encode_frame(proto.STDOUT, 1, b"12345")[:7])
        peer = FakePeer(h)
        self.addCleanup(peer.close)
        with self.assertRaisesRegex(proto.ProtocolError, "inside a frame"):
            self.client(peer).exec("true", timeout=5)

    def test_reset_mid_frame_is_a_protocol_error(self):
        # The peer leaves our request unread when it closes: the kernel then reports a reset
        # (ECONNRESET) instead of EOF after the partial frame, and that must read the same.
        def h(c):
            select.select([c], [], [], 5)  # the request arrived; leave it unread
            c.sendall(proto.encode_frame(proto.STDOUT, 1, b"12345")[:7])
        peer = FakePeer(h)
        self.addCleanup(peer.close)
        with self.assertRaisesRegex(proto.ProtocolError, "inside a frame"):
            self.client(peer).exec("true", timeout=5)

    def test_silent_peer_times_out_and_liveness_check_can_abort(self):
        def h(c):
            c.recv(1024)
            time.sleep(10)
        peer = FakePeer(h)
        self.addCleanup(peer.close)
        t0 = time.monotonic()
        with self.assertRaises(proto.AgentTimeout):
            self.client(peer).ping(timeout=0.6)
        # Wide of the 0.6 s deadline (a loaded CI machine), well short of the peer's 10 s.
        self.assertLess(time.monotonic() - t0, 5.0, "the deadline was not honoured")

        class Gone(Exception):
            pass

        def check():
            raise Gone()
        peer2 = FakePeer(h)
        self.addCleanup(peer2.close)
        with self.assertRaises(Gone, msg="a wait without deadline must still call the liveness check"):
            self.client(peer2, check=check).exec("sleep 100", timeout=None)


@unittest.skipUnless(os.access(AGENT, os.X_OK), "build/amber-agent is missing (make build/amber-agent)")
class TestClientAgainstRealAgent(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.sock = os.path.join(cls.dir, "agent.sock")
        cls.proc = subprocess.Popen([AGENT, "--listen", "unix:" + cls.sock, "--no-init"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            if os.path.exists(cls.sock):
                break
            time.sleep(0.05)
        cls.c = proto.AgentClient(functools.partial(proto.connect_unix, cls.sock))

    @classmethod
    def tearDownClass(cls):
        os.killpg(cls.proc.pid, signal.SIGKILL)
        cls.proc.wait()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_ping(self):
        p = self.c.ping()
        self.assertEqual(p["proto_version"], 1)
        self.assertTrue(p["agent_version"])

    def test_exec_separates_stdout_stderr_and_reports_exit_code(self):
        r = self.c.exec("printf out; printf err >&2; exit 7", timeout=10)
        self.assertEqual((r.stdout, r.stderr, r.returncode), ("out", "err", 7))
        self.assertIsNotNone(r.pid)

    def test_exec_argv_env_cwd(self):
        r = self.c.exec(["sh", "-c", 'echo "$FOO $(pwd)"'], env={"FOO": "bar baz"}, cwd="/", timeout=10)
        self.assertEqual(r.stdout, "bar baz /\n")

    def test_exec_signal_and_timeout(self):
        r = self.c.exec("kill -TERM $$", timeout=10)
        self.assertEqual((r.returncode, r.signal), (-15, 15))
        r = self.c.exec("sleep 30", timeout_ms=200, timeout=10)
        self.assertTrue(r.timed_out, "the agent should report TIMED_OUT")
        self.assertEqual(r.signal, 9)

    def test_exec_binary_stdin_larger_than_a_chunk(self):
        data = bytes(range(256)) * 1500  # 384000 bytes, > 64 KiB chunks, all byte values
        r = self.c.exec("cat", stdin=data, timeout=20)
        self.assertEqual(r.stdout_bytes, data)

    def test_file_round_trip_with_mode(self):
        path = os.path.join(self.dir, "f.bin")
        data = os.urandom(200000)
        self.assertEqual(self.c.write_file(path, data, 0o600), {"size": len(data), "mode": 0o600})
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o600)
        self.assertEqual(self.c.read_file(path), data)
        self.assertEqual(self.c.write_file(path, b""), {"size": 0, "mode": 0o644})
        self.assertEqual(self.c.read_file(path), b"")

    def test_errors_carry_errno(self):
        with self.assertRaises(proto.AgentError) as cm:
            self.c.read_file(os.path.join(self.dir, "missing"))
        self.assertEqual(cm.exception.errno, 2)
        with self.assertRaises(proto.AgentError) as cm:
            self.c.write_file(os.path.join(self.dir, "no", "such"), b"x" * 300000)
        self.assertEqual(cm.exception.errno, 2, "an early refusal must surface as ERROR, not a broken pipe")
        with self.assertRaises(proto.AgentError):
            self.c.exec("true", cwd="/nonexistent-dir")


if __name__ == "__main__":
    unittest.main()
