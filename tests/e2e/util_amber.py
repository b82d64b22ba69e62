"""Shared helpers for the agent, pause and API e2e tests: the HTTP API over a Unix socket, the
agent protocol (proto/PROTOCOL.md) over amber's hybrid vsock, amberctl, and process stats.

The HTTP client and the agent codec are the SDK's (sdk/python/amber/api.py, proto.py), the one
Python implementation of both; what is here adapts them to the tests' older call shapes.
"""
import faulthandler
import hashlib
import os
import re
import socket
import subprocess
import sys
import time

import harness

sys.path.insert(0, os.path.join(harness.REPO, "sdk", "python"))
from amber import api, proto  # noqa: E402

AMBERCTL = os.path.join(harness.BUILD, "amberctl")
AGENT_PORT = proto.DEFAULT_PORT

def nested_virt():
    """True when this (test) host itself runs under a hypervisor: the CPU flags say so."""
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"^flags\s*:.*\bhypervisor\b", f.read(), re.M) is not None
    except OSError:
        return True


def arm_watchdog(seconds=600.0):
    """Dumps every thread's stack to stderr if a test is still running after seconds (scaled):
    a hung check then shows where it hangs instead of eating the suite's budget silently."""
    faulthandler.dump_traceback_later(harness.scaled(seconds), exit=False)


def disarm_watchdog():
    faulthandler.cancel_dump_traceback_later()


# --- the HTTP API -------------------------------------------------------------------------------


class Api:
    """A keep-alive client for amber's API socket (the SDK's api.Client). call() returns
    (status, parsed JSON body, or the text when it is not JSON, or None when empty)."""

    def __init__(self, path, timeout=30.0):
        self.path, self.timeout = path, timeout
        self.client = api.Client(path, harness.scaled(timeout))

    def call(self, method, url, body=None):
        r = self.client.call(method, url, body)
        return r.status, r.body if r.body is not None else (r.text or None)

    def close(self):
        self.client.close()


def wait_for_path(path, timeout=30.0, vm=None):
    """Waits until path exists (polling every 5 ms); fails early if vm exits."""
    deadline = time.monotonic() + harness.scaled(timeout)
    while not os.path.exists(path):
        if vm is not None and not vm.alive():
            raise AssertionError("amber exited (status %s) before %s appeared\n%s"
                                 % (vm.proc.poll(), path, vm.tail()))
        if time.monotonic() > deadline:
            raise AssertionError("%s did not appear within %.0f s" % (path, harness.scaled(timeout)))
        time.sleep(0.005)


# --- the agent protocol: the SDK's codec (sdk/python/amber/proto.py) -----------------------------

T_PING, T_EXEC, T_DATA, T_EOF = proto.PING, proto.EXEC, proto.DATA, proto.EOF
T_RESULT, T_STDOUT, T_STDERR, T_EXIT, T_STARTED, T_ERROR = (
    proto.RESULT, proto.STDOUT, proto.STDERR, proto.EXIT, proto.STARTED, proto.ERROR)
TAG_EXIT_CODE, TAG_SIGNAL, TAG_TIMED_OUT = proto.TAG_EXIT_CODE, proto.TAG_SIGNAL, proto.TAG_TIMED_OUT
_INT_TAGS = {proto.TAG_TIMEOUT_MS, proto.TAG_MODE, proto.TAG_ACTION, proto.TAG_PROTO_VERSION,
             proto.TAG_UPTIME_MS, proto.TAG_EXIT_CODE, proto.TAG_SIGNAL, proto.TAG_DURATION_MS,
             proto.TAG_TIMED_OUT, proto.TAG_SIZE, proto.TAG_PID, proto.TAG_ERRNO}


def parse_tlvs(payload):
    """{tag: value} of a payload (the last of a repeated tag); integer tags as int."""
    return {tag: int.from_bytes(v, "big") if tag in _INT_TAGS and len(v) == 8 else v
            for tag, v in proto.decode_tlvs(payload)}


def frame(ftype, payload=b"", stream=1):
    return proto.encode_frame(ftype, stream, payload)


def exec_request(argv=None, shell=None, timeout_ms=None, env=()):
    """An EXEC frame running shell (a string) or argv; env: "NAME=value" strings."""
    env = dict(e.split("=", 1) for e in env)
    return frame(T_EXEC, proto.exec_request(shell if shell is not None else argv, env, timeout_ms=timeout_ms))


class VsockConn:
    """One host-initiated vsock connection to a guest port through amber's Unix socket; frames
    are read with the SDK's FrameReader."""

    def __init__(self, uds_path, port=AGENT_PORT, timeout=30.0, handshake=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(harness.scaled(timeout))
        self.sock.connect(uds_path)
        self.buf = b""
        self.reader = proto.FrameReader()
        self.sock.sendall(b"CONNECT %d\n" % port)
        if handshake:
            self.handshake()

    def handshake(self):
        """Reads the 'OK <port>' line; raises AssertionError if amber closed instead."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("vsock: connection closed before the OK line (got %r)" % self.buf)
            self.buf += chunk
        line, rest = self.buf.split(b"\n", 1)
        self.buf = b""
        self.reader.feed(rest)
        if not re.match(rb"^OK \d+$", line):
            raise AssertionError("vsock: bad handshake reply %r" % line)
        return line

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self):
        """Returns (type, payload); EOFError when the agent closed the connection."""
        while True:
            f = self.reader.next()
            if f is not None:
                return f[0], f[2]
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.reader.feed(chunk)

    def close(self):
        self.sock.close()


def read_exec_result(conn):
    """Reads frames until EXIT; returns dict(code, signal, timed_out, stdout, stderr)."""
    out, err = [], []
    while True:
        ftype, payload = conn.read_frame()
        if ftype in (T_STDOUT, T_STDERR):
            (out if ftype == T_STDOUT else err).append(payload)
        elif ftype == T_EXIT:
            t = proto.Tlvs(payload)
            return {"code": t.int(TAG_EXIT_CODE), "signal": t.int(TAG_SIGNAL),
                    "timed_out": t.int(TAG_TIMED_OUT, 0), "stdout": b"".join(out), "stderr": b"".join(err)}
        elif ftype == T_ERROR:
            raise AssertionError("agent ERROR frame: %r" % proto.Tlvs(payload).str(proto.TAG_MESSAGE))


def agent_client(uds_path, timeout=30.0, port=AGENT_PORT):
    """The SDK's AgentClient on amber's hybrid vsock socket uds_path; connecting (up to the OK
    line) may take timeout seconds (scaled)."""
    return proto.AgentClient(lambda t: proto.connect_hybrid_vsock(uds_path, port, t),
                             connect_timeout=harness.scaled(timeout))


def agent_ping(uds_path, timeout=30.0):
    """One full connection: CONNECT, PING, RESULT, close. Returns the protocol version."""
    return agent_client(uds_path, timeout).ping(timeout=harness.scaled(timeout))["proto_version"]


def wait_agent(uds_path, timeout=60.0):
    """Pings the agent until it answers (the vsock listener may come up after the ready line)."""
    deadline = time.monotonic() + harness.scaled(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            return agent_ping(uds_path, timeout=10)
        except (OSError, EOFError, proto.ProtocolError, proto.AgentTimeout, proto.AgentError) as e:
            last = e
            time.sleep(0.2)
    raise AssertionError("the agent did not answer a ping within %.0f s: %s" % (timeout, last))


# --- amberctl -----------------------------------------------------------------------------------


def ctl_exec(uds_path, cmd, input=None, timeout=120.0, extra=()):
    """Runs `amberctl exec --vsock uds_path [extra] -- cmd...`; returns the CompletedProcess.

    cmd is a list (argv) or a string (run through sh -c).
    """
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    argv = [AMBERCTL, "exec", "--vsock", uds_path] + list(extra) + ["--"] + list(cmd)
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=harness.scaled(timeout))


def guest_sh(uds_path, script, timeout=120.0, input=None):
    """Runs script in the guest and returns its stdout (str); fails the test if it exits non-0."""
    res = ctl_exec(uds_path, script, input=input, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError("guest command %r exited %d\nstdout: %r\nstderr: %r"
                             % (script, res.returncode, res.stdout[-2000:], res.stderr[-2000:]))
    return res.stdout.decode("utf-8", "replace")


# --- process statistics -------------------------------------------------------------------------


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settled_fd_count(pid, want, timeout=10.0):
    """Polls the fd count until it equals want (closes may be deferred to the loop); returns it."""
    deadline = time.monotonic() + harness.scaled(timeout)
    n = fd_count(pid)
    while n != want and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def fd_list(pid):
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    return out


def smaps_rss_kib(pid, guest_mem_mib):
    """(guest RAM resident, the rest resident) in KiB, from /proc/PID/smaps. Guest RAM is the
    anonymous mapping whose size is exactly guest_mem_mib (amber maps it in one piece below 3 GiB
    for small guests)."""
    guest = rest = 0
    size_kib = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                size_kib = None
            elif line.startswith("Size:"):
                size_kib = int(line.split()[1])
            elif line.startswith("Rss:"):
                if size_kib == guest_mem_mib * 1024:
                    guest += int(line.split()[1])
                else:
                    rest += int(line.split()[1])
    return guest, rest


def vmm_rss_kib(pid, guest_mem_mib):
    """amber's own resident memory: total Rss minus the guest RAM mapping (guest activity
    touches that, so it is not VMM overhead)."""
    return smaps_rss_kib(pid, guest_mem_mib)[1]


def guest_ram_rss_kib(pid, guest_mem_mib):
    """Resident KiB of amber's guest-RAM mapping."""
    return smaps_rss_kib(pid, guest_mem_mib)[0]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --- one SDK sandbox shared by a module's tests ---------------------------------------------------


def start_shared_sandbox(tag):
    """setUpModule's part: skips the module without build/amber or /dev/kvm, else creates one
    sandbox in a new runtime root under /tmp. Returns (root, sandbox)."""
    import tempfile  # noqa: PLC0415
    import unittest  # noqa: PLC0415

    from amber import Sandbox  # noqa: PLC0415

    if not os.access(harness.AMBER, os.X_OK):
        raise unittest.SkipTest("build/amber is missing: run make")
    if not os.path.exists("/dev/kvm"):
        raise unittest.SkipTest("no /dev/kvm here (run through scripts/testhost.sh)")
    root = tempfile.mkdtemp(prefix="amber-%s-" % tag, dir="/tmp")
    t0 = time.monotonic()
    sbx = Sandbox.create(runtime_dir=os.path.join(root, "amber"))
    harness.log("sandbox %s up in %.1f s" % (sbx.id, time.monotonic() - t0))
    return root, sbx


def end_shared_sandbox(tag, root, sbx):
    """tearDownModule's part: keeps the sandbox's console in AMBER_E2E_LOGDIR as
    TAG-ID.console.log, deletes the sandbox and removes root (each of them may be None)."""
    import shutil  # noqa: PLC0415

    if sbx is not None:
        log_dir = os.environ.get("AMBER_E2E_LOGDIR")
        if log_dir:
            try:
                shutil.copy(sbx.console_path, os.path.join(log_dir, "%s-%s.console.log" % (tag, sbx.id)))
            except OSError as e:  # a sandbox that died took its runtime directory with it
                print("  [e2e] no console log of %s to keep: %s" % (sbx.id, e))
        try:
            sbx.delete()
        except Exception:  # noqa: BLE001
            pass
    if root:
        shutil.rmtree(root, ignore_errors=True)
