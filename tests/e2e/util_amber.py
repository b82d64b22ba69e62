"""Shared helpers for the agent, pause and API e2e tests: the HTTP API over a Unix socket, the
agent protocol (proto/PROTOCOL.md) over amber's hybrid vsock, amberctl, and process stats.

Only the standard library: these tests double as "a Firecracker client written with stdlib".
"""
import faulthandler
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import time

import harness

AMBERCTL = os.path.join(harness.BUILD, "amberctl")
AGENT_PORT = 1024

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


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Api:
    """A keep-alive client for amber's API socket. call() returns (status, parsed body or None)."""

    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self.conn = None

    def call(self, method, url, body=None):
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = _UnixHTTPConnection(self.path, harness.scaled(self.timeout))
            try:
                self.conn.request(method, url, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server may close an idle keep-alive connection: retry once on a fresh one.
                self.close()
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
        return resp.status, parsed

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


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


# --- the agent protocol -------------------------------------------------------------------------

T_PING, T_EXEC, T_READ_FILE, T_WRITE_FILE, T_SHUTDOWN = 0x01, 0x02, 0x03, 0x04, 0x05
T_DATA, T_EOF = 0x10, 0x11
T_RESULT, T_STDOUT, T_STDERR, T_EXIT, T_STARTED, T_ERROR = 0x20, 0x21, 0x22, 0x23, 0x24, 0x7F
TAG_ARGV, TAG_SHELL, TAG_ENV, TAG_CWD, TAG_TIMEOUT_MS = 1, 2, 3, 4, 5
TAG_PROTO_VERSION, TAG_EXIT_CODE, TAG_SIGNAL, TAG_TIMED_OUT = 16, 19, 20, 22
TAG_MESSAGE = 33
_INT_TAGS = {5, 8, 9, 16, 18, 19, 20, 21, 22, 23, 24, 32}


def tlv_str(tag, value):
    value = value.encode() if isinstance(value, str) else value
    return struct.pack(">HI", tag, len(value)) + value


def tlv_int(tag, value):
    return struct.pack(">HIQ", tag, 8, value)


def parse_tlvs(payload):
    out = {}
    off = 0
    while off + 6 <= len(payload):
        tag, n = struct.unpack_from(">HI", payload, off)
        val = payload[off + 6: off + 6 + n]
        off += 6 + n
        out[tag] = struct.unpack(">Q", val)[0] if tag in _INT_TAGS and n == 8 else val
    return out


def frame(ftype, payload=b"", stream=1):
    return struct.pack(">IBI", len(payload), ftype, stream) + payload


class VsockConn:
    """One host-initiated vsock connection to a guest port through amber's Unix socket."""

    def __init__(self, uds_path, port=AGENT_PORT, timeout=30.0, handshake=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(harness.scaled(timeout))
        self.sock.connect(uds_path)
        self.buf = b""
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
        line, self.buf = self.buf.split(b"\n", 1)
        if not re.match(rb"^OK \d+$", line):
            raise AssertionError("vsock: bad handshake reply %r" % line)
        return line

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.buf += chunk

    def read_frame(self):
        """Returns (type, payload)."""
        self._fill(9)
        n, ftype, _ = struct.unpack(">IBI", self.buf[:9])
        self._fill(9 + n)
        payload = self.buf[9: 9 + n]
        self.buf = self.buf[9 + n:]
        return ftype, payload

    def close(self):
        self.sock.close()


def exec_request(argv=None, shell=None, timeout_ms=None, env=()):
    payload = b""
    if shell is not None:
        payload += tlv_str(TAG_SHELL, shell)
    for a in argv or ():
        payload += tlv_str(TAG_ARGV, a)
    for e in env:
        payload += tlv_str(TAG_ENV, e)
    if timeout_ms:
        payload += tlv_int(TAG_TIMEOUT_MS, timeout_ms)
    return frame(T_EXEC, payload)


def read_exec_result(conn):
    """Reads frames until EXIT; returns dict(code, signal, timed_out, stdout, stderr)."""
    out, err = [], []
    while True:
        ftype, payload = conn.read_frame()
        if ftype == T_STDOUT:
            out.append(payload)
        elif ftype == T_STDERR:
            err.append(payload)
        elif ftype == T_EXIT:
            t = parse_tlvs(payload)
            return {"code": t.get(TAG_EXIT_CODE), "signal": t.get(TAG_SIGNAL),
                    "timed_out": t.get(TAG_TIMED_OUT, 0), "stdout": b"".join(out),
                    "stderr": b"".join(err)}
        elif ftype == T_ERROR:
            raise AssertionError("agent ERROR frame: %r" % parse_tlvs(payload).get(TAG_MESSAGE))


def agent_ping(uds_path, timeout=30.0):
    """One full connection: CONNECT, PING, RESULT, close. Returns the protocol version."""
    c = VsockConn(uds_path, timeout=timeout)
    try:
        c.send(frame(T_PING))
        ftype, payload = c.read_frame()
        if ftype != T_RESULT:
            raise AssertionError("ping: expected RESULT, got frame type %#x" % ftype)
        return parse_tlvs(payload).get(TAG_PROTO_VERSION)
    finally:
        c.close()


def wait_agent(uds_path, timeout=60.0):
    """Pings the agent until it answers (the vsock listener may come up after the ready line)."""
    deadline = time.monotonic() + harness.scaled(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            return agent_ping(uds_path, timeout=10)
        except (OSError, AssertionError, EOFError) as e:
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


def vmm_rss_kib(pid, guest_mem_mib):
    """amber's own resident memory: total Rss minus the guest RAM mapping(s).

    Guest RAM is the anonymous mapping whose size is exactly guest_mem_mib (amber maps it in one
    piece below 3 GiB for small guests); guest activity touches it, so it is not VMM overhead.
    """
    total = 0
    size_kib = None
    guest_size = guest_mem_mib * 1024
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                size_kib = None
            elif line.startswith("Size:"):
                size_kib = int(line.split()[1])
            elif line.startswith("Rss:"):
                if size_kib != guest_size:
                    total += int(line.split()[1])
    return total


def sha256(data):
    return hashlib.sha256(data).hexdigest()
