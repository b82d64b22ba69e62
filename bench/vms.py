"""The two VMMs under test, started alike: amber, and QEMU `-M microvm,acpi=on` as the reference.

Both boot build/guest/vmlinuz with the guest initramfs (the agent is its init), and can get the
same drive (a file, page-cached), TAP, vsock and control socket. The agent is reached through
amber's hybrid vsock socket or through QEMU's vhost-vsock (AF_VSOCK from this host).
"""
import json
import os
import socket
import subprocess
import time

import lib
from lib import harness, proto


class GuestVm:
    """One VMM process. kind is "amber" or "qemu"; start() boots it, wait_ready() waits for the
    agent's marker, control() is a pause/resume client, agent() an agent-protocol client."""

    def __init__(self, session, kind, vcpus=1, mem_mib=256, drive=None, tap=None, vsock=False,
                 control=False, kernel=harness.VMLINUZ, initrd=harness.INITRAMFS, cmdline=lib.CMDLINE,
                 name=None, cid=lib.QEMU_CID, aio="threads", direct=False):
        """name tells apart two VMs of one kind (socket names); cid is a QEMU guest's vhost-vsock
        CID; aio is QEMU's drive aio= setting (threads or io_uring); direct opens QEMU's drive
        with cache=none (O_DIRECT), which amber does by itself where the file system allows it."""
        self.session, self.kind = session, kind
        self.name, self.cid = name or kind, cid
        self.vcpus, self.mem_mib = vcpus, mem_mib
        self.vsock_path = session.path("%s-vsock.sock" % self.name) if vsock else None
        self.ctl_path = session.path("%s-ctl.sock" % self.name) if control else None
        self.has_vsock = vsock
        self.vm = None
        self._ctl = None
        if kind == "amber":
            argv = [lib.AMBER, "--kernel", kernel, "--cmdline", cmdline, "--vcpus", str(vcpus),
                    "--mem-mib", str(mem_mib), "--console", "stdio"]
            if initrd:
                argv += ["--initrd", initrd]
            if drive:
                argv += ["--drive", "path=%s,id=bench" % drive]
            if tap:
                argv += ["--net", "tap=%s" % tap]
            if vsock:
                argv += ["--vsock", "cid=3,uds=%s" % self.vsock_path]
            if control:
                argv += ["--api-sock", self.ctl_path]
        else:
            argv = [lib.QEMU, "-M", "microvm,acpi=on", "-enable-kvm", "-cpu", "host", "-m", str(mem_mib),
                    "-smp", str(vcpus), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                    "-serial", "stdio", "-kernel", kernel, "-append", cmdline]
            if initrd:
                argv += ["-initrd", initrd]
            if drive:
                argv += ["-drive", "id=bench,file=%s,format=raw,if=none,cache=%s,aio=%s"
                         % (drive, "none" if direct else "writeback", aio),
                         "-device", "virtio-blk-device,drive=bench"]
            if tap:
                argv += ["-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % tap,
                         "-device", "virtio-net-device,netdev=n0"]
            if vsock:
                argv += ["-device", "vhost-vsock-device,guest-cid=%d" % cid]
            if control:
                argv += ["-qmp", "unix:%s,server=on,wait=off" % self.ctl_path]
        self.argv = argv

    def start(self):
        self.vm = self.session.start(self.argv)
        return self

    @property
    def pid(self):
        return self.vm.pid

    def wait_ready(self, timeout_s=300.0):
        """Waits for the marker; returns seconds since start. Raises AssertionError on failure."""
        self.vm.wait_for(lib.READY, timeout=timeout_s)
        return self.vm.elapsed_s()

    # ------------------------------------------------------------- agent
    def connect(self, timeout_s):
        """A connected agent socket and leftover bytes (the AgentClient connect contract)."""
        if self.kind == "amber":
            return proto.connect_hybrid_vsock(self.vsock_path, lib.AGENT_PORT, timeout_s)
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout_s)
            s.connect((self.cid, lib.AGENT_PORT))
            return s, b""
        except BaseException:
            s.close()
            raise

    def agent(self):
        return proto.AgentClient(self.connect, connect_timeout=30.0)

    def wait_agent(self, timeout_s=120.0):
        """Pings the agent until it answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.agent().ping(timeout=10.0)
            except (OSError, ConnectionError, proto.ProtocolError, proto.AgentTimeout):
                if time.monotonic() > deadline or not self.vm.alive():
                    raise
                time.sleep(0.2)

    def sh(self, script, timeout_s=600.0):
        """Runs a shell string in the guest; returns ExecResult, raising if it failed."""
        r = self.agent().exec(script, timeout=timeout_s)
        if r.returncode != 0:
            raise RuntimeError("%s guest: `%s` failed (%s): %s%s"
                               % (self.kind, script, r.returncode, r.stdout[-500:], r.stderr[-500:]))
        return r

    # ------------------------------------------------------------- pause / resume
    def control(self):
        if self._ctl is None:
            self._ctl = lib.HttpUnix(self.ctl_path) if self.kind == "amber" else lib.Qmp(self.ctl_path)
        return self._ctl

    def pause(self):
        if self.kind == "qemu":
            self.control().cmd("stop")
            return
        status, body = self.control().request("POST", "/pause")
        if status != 200:
            raise RuntimeError("POST /pause: %d %s" % (status, body[:200]))

    def resume(self):
        if self.kind == "qemu":
            self.control().cmd("cont")
            return
        status, body = self.control().request("POST", "/resume")
        if status != 200:
            raise RuntimeError("POST /resume: %d %s" % (status, body[:200]))

    def noop(self):
        """One control round trip that changes nothing (GET / or QMP query-status). For amber,
        returns GET /'s JSON (it carries the server-side pause / resume latencies)."""
        if self.kind == "qemu":
            self.control().cmd("query-status")
            return None
        status, body = self.control().request("GET", "/")
        if status != 200:
            raise RuntimeError("GET /: %d %s" % (status, body[:200]))
        return json.loads(body)

    def stop(self):
        if self._ctl is not None:
            try:
                self._ctl.close()
            except OSError:
                pass
            self._ctl = None
        if self.vm is not None:
            self.vm.kill()

    def tail(self):
        return self.vm.tail() if self.vm else ""


def stream_exec_count(vm, argv, timeout_s=600.0):
    """Runs argv through the agent and counts its stdout bytes without keeping them.

    Returns (stdout bytes, seconds from request to EXIT, exit code).
    """
    sock, rest = vm.connect(30.0)
    try:
        sock.settimeout(timeout_s)
        reader = proto.FrameReader()
        reader.feed(rest)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        t0 = time.monotonic()
        sock.sendall(proto.encode_frame(proto.EXEC, 1, proto.exec_request(argv)) +
                     proto.encode_frame(proto.EOF, 1))
        nout = 0
        while True:
            f = reader.next()
            if f is None:
                n = sock.recv_into(buf)
                if n == 0:
                    raise proto.ProtocolError("the agent closed the connection")
                reader.feed(view[:n])
                continue
            ftype, _sid, payload = f
            if ftype == proto.STDOUT:
                nout += len(payload)
            elif ftype == proto.EXIT:
                t = proto.Tlvs(payload)
                return nout, time.monotonic() - t0, t.int(proto.TAG_EXIT_CODE)
            elif ftype == proto.ERROR:
                raise RuntimeError("agent error: %r" % payload[:200])
    finally:
        sock.close()


def qemu_has_vhost_vsock():
    return os.path.exists("/dev/vhost-vsock")


def qemu_has_io_uring(scratch):
    """True when this QEMU build accepts a drive with aio=io_uring (it needs liburing at build
    time); scratch is a file path it may open."""
    with open(scratch, "wb") as f:
        f.truncate(1 << 20)
    try:
        r = subprocess.run([lib.QEMU, "-M", "none", "-nodefaults", "-display", "none", "-S",
                            "-drive", "file=%s,format=raw,if=none,aio=io_uring,cache=writeback" % scratch,
                            "-qmp", "stdio"], input=b'{"execute": "qmp_capabilities"}\n'
                           b'{"execute": "quit"}\n', stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.unlink(scratch)
    return r.returncode == 0
