"""Shared pieces of amber's benchmarks: settings, statistics, memory probes, and the two VMMs
(amber and the QEMU microvm reference) started the same way and driven through the same agent.

Everything here is standard-library Python; the API client and the agent protocol come from the
SDK (api.py, proto.py).
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))
import harness  # noqa: E402
from amber import api, proto  # noqa: E402

# AMBER_BENCH_BIN runs the benches on another amber build, e.g. build/test-hooks/amber for
# issue 13's clock experiment (docs/pause.md).
AMBER = os.environ.get("AMBER_BENCH_BIN") or harness.AMBER
AMBERCTL = os.path.join(harness.BUILD, "amberctl")
QEMU = "qemu-system-x86_64"
READY = re.compile(harness.READY)
CMDLINE = "console=ttyS0 reboot=k panic=-1 quiet"
AGENT_PORT = proto.DEFAULT_PORT
QEMU_CID = 42
MIB = 1 << 20


class Settings:
    """Run counts: the issues' minimums by default; BENCH_QUICK=1 shrinks them for a quick
    check, BENCH_RUNS=N sets the repeated-run counts and BENCH_CYCLES=N the 200-cycle ones."""

    def __init__(self, env=os.environ):
        self.quick = env.get("BENCH_QUICK", "") not in ("", "0")
        runs = int(env.get("BENCH_RUNS") or (1 if self.quick else 5))
        cycles = int(env.get("BENCH_CYCLES") or (20 if self.quick else 200))
        self.boot_runs = runs
        self.io_runs = runs
        self.startup_runs = max(runs, 5 if self.quick else 20)
        self.sdk_runs = int(env.get("BENCH_SDK_RUNS") or (2 if self.quick else max(runs, 10)))
        self.exec_cycles = cycles
        self.pause_cycles = cycles
        self.block_mib = 64 if self.quick else 256
        # Where block drives live: "ext4" (an ext4 file system on a loop device over a tmpfs
        # file, so both VMMs open the drive O_DIRECT and the page-cache copy falls to the loop
        # device's kernel thread, outside either VMM) or "tmpfs" (page-cached for both).
        self.block_fs = env.get("BENCH_BLOCK_FS") or "ext4"
        if self.block_fs not in ("ext4", "tmpfs"):
            raise ValueError("BENCH_BLOCK_FS takes ext4 or tmpfs, not %r" % self.block_fs)
        # The test host's nested guests move busybox nc and the agent's stream at about 1-3 MiB/s,
        # so TCP runs are short and the 256 MiB vsock stream runs BENCH_VSOCK_RUNS times (1).
        self.tcp_mib = int(env.get("BENCH_TCP_MIB") or (2 if self.quick else 8))
        self.vsock_mib = 16 if self.quick else 256
        self.vsock_runs = int(env.get("BENCH_VSOCK_RUNS") or 1)
        self.mem_mib = 256
        self.boot_timeout_s = 300.0
        only = env.get("BENCH_ONLY", "")
        self.only = set(x for x in re.split(r"[ ,]+", only) if x)

    def wants(self, name):
        return not self.only or name in self.only


# ----------------------------------------------------------------- statistics and formatting
# A figure is a list of samples, or a summary {"median", "p99"} rebuilt from a run's log.
def median(xs):
    return xs["median"] if isinstance(xs, dict) else statistics.median(xs)


def p99(xs):
    """Nearest-rank 99th percentile."""
    if isinstance(xs, dict):
        return xs["p99"]
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, -(-99 * len(s) // 100) - 1))]


def spread(xs):
    """(max - min) / median: above 0.3 a figure is marked noisy."""
    if isinstance(xs, dict):
        return 0.0
    m = median(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


def fmt_range(xs, fmt="%.2f"):
    """'median (min–max)'."""
    if not xs:
        return "—"
    return (fmt + " (" + fmt + "–" + fmt + ")") % (median(xs), min(xs), max(xs))


def fmt_p99(xs, fmt="%.2f"):
    """'median / p99'."""
    if not xs:
        return "—"
    return (fmt + " / " + fmt) % (median(xs), p99(xs))


def log(msg):
    print("  [bench] " + msg, file=sys.stderr, flush=True)


cpu_has_hw_virt = harness.cpu_has_hw_virt


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


# ----------------------------------------------------------------- memory probes
_MAP = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def proc_status_kib(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM...), or None once the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def guest_ram_rss_kib(pid, mem_mib):
    """Resident KiB of the guest-RAM mapping of a VMM process, from /proc/PID/smaps.

    The guest RAM is the anonymous mapping whose size is mem_mib (up to 16 MiB more for
    alignment or guard pages); if none fits, the largest mapping at least mem_mib large.
    Returns None when the process is gone.
    """
    want = mem_mib * 1024
    maps, cur = [], None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                if _MAP.match(line):
                    parts = line.split()
                    cur = {"path": parts[5] if len(parts) > 5 else "", "size": 0, "rss": 0}
                    maps.append(cur)
                elif cur is not None and line.startswith("Size:"):
                    cur["size"] = int(line.split()[1])
                elif cur is not None and line.startswith("Rss:"):
                    cur["rss"] = int(line.split()[1])
    except (OSError, ValueError):
        return None
    anon = [m for m in maps if not m["path"].startswith("/")]
    fit = [m for m in anon if want <= m["size"] <= want + 16 * 1024]
    if not fit:
        big = sorted((m for m in anon if m["size"] >= want), key=lambda m: m["size"])
        fit = big[-1:]
    return sum(m["rss"] for m in fit)


def rss_overhead_kib(pid, mem_mib):
    """(VmRSS, guest RAM resident, VmRSS minus guest RAM) in KiB, or None."""
    rss = proc_status_kib(pid, "VmRSS")
    guest = guest_ram_rss_kib(pid, mem_mib)
    if rss is None or guest is None:
        return None
    return rss, guest, rss - guest


# ----------------------------------------------------------------- host helpers
def cpu_s(pid):
    """(user + system, guest) CPU seconds of a process over all its threads, live and ended, from
    /proc/PID/stat (utime + stime, and guest_time, which utime includes: the time a vCPU thread
    spent running guest code). None once the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tck = float(os.sysconf("SC_CLK_TCK"))
    # fields[0] is field 3 (state): utime is field 14, stime 15, guest_time 43.
    return (int(fields[11]) + int(fields[12])) / tck, int(fields[40]) / tck


class CpuMeter:
    """CPU a process spends between start() and stop(): total (user + system, all threads) and
    own (total minus guest time), in seconds."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = None

    def start(self):
        self.t0 = cpu_s(self.pid)
        return self

    def stop(self):
        t1 = cpu_s(self.pid)
        if self.t0 is None or t1 is None:
            raise RuntimeError("cannot read /proc/%d/stat" % self.pid)
        total = t1[0] - self.t0[0]
        return total, total - (t1[1] - self.t0[1])


class Tap:
    """A persistent TAP device with the host side at 10.77.N.1/24 (guest .2); delete() removes it."""

    def __init__(self, name="ambbench0", subnet=0):
        self.name = name
        self.host_ip, self.guest_ip = "10.77.%d.1" % subnet, "10.77.%d.2" % subnet
        subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)
        for cmd in (["ip", "tuntap", "add", "dev", name, "mode", "tap"],
                    ["ip", "addr", "add", self.host_ip + "/24", "dev", name],
                    ["ip", "link", "set", name, "up"]):
            subprocess.run(cmd, check=True)

    def delete(self):
        subprocess.run(["ip", "link", "del", self.name], stderr=subprocess.DEVNULL)


def wait_unix_socket(path, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.01)
    raise TimeoutError("%s did not accept connections in %.0f s" % (path, timeout_s))


class HttpUnix:
    """amber's API over its Unix socket: the SDK's keep-alive api.Client, once the socket
    accepts connections."""

    def __init__(self, path, timeout_s=30.0):
        self.path, self.timeout_s, self.client = path, timeout_s, None

    def request(self, method, target, body=None):
        """Returns (status, body text)."""
        if self.client is None:
            wait_unix_socket(self.path, self.timeout_s).close()
            self.client = api.Client(self.path, self.timeout_s)
        r = self.client.call(method, target, body)
        return r.status, r.text

    def close(self):
        if self.client is not None:
            self.client.close()
        self.client = None


class Qmp:
    """A QMP client: greeting, capabilities, then one command at a time."""

    def __init__(self, path, timeout_s=30.0):
        self.sock = wait_unix_socket(path, timeout_s)
        self.sock.settimeout(timeout_s)
        self.buf = b""
        self._line()  # greeting
        self.cmd("qmp_capabilities")

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def cmd(self, name, **args):
        """Runs one command with its arguments and returns its "return" value (events in
        between are skipped); a QMP error raises RuntimeError."""
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = json.loads(self._line())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError("QMP %s: %s" % (name, reply["error"]))

    def close(self):
        self.sock.close()
