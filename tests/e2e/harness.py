"""Helpers for amber's end-to-end tests: start a VMM with a captured console, wait for lines, clean up.

A test derives from AmberTestCase and starts VMs with self.amber(...) (see Session.amber); each test's
sockets and scratch images live in a directory under /tmp (a tmpfs in the test host: 9p cannot hold Unix
sockets), every process it starts is killed in tearDown, and its console and stderr go to
$AMBER_E2E_LOGDIR/<test id>.log when that is set. Timeouts are multiplied by $AMBER_E2E_TIMEOUT_SCALE (1).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))
# The SDK's: a copy keeping holes, the vmx/svm check, "inside the test host" (its init's amber.job=).
from amber.runtime import cpu_has_hw_virt, in_test_host, sparse_copy  # noqa: E402,F401
BUILD = os.path.join(REPO, "build")
AMBER = os.environ.get("AMBER_E2E_BINARY") or os.path.join(BUILD, "amber")  # a mutant, to watch a test fail
GUEST = os.path.join(BUILD, "guest")
VMLINUZ = os.path.join(GUEST, "vmlinuz")
VMLINUX = os.path.join(GUEST, "vmlinux")
INITRAMFS = os.path.join(GUEST, "initramfs.cpio.gz")
ROOTFS = os.path.join(GUEST, "rootfs.ext4")

READY = r"^amber-guest: ready$"
DEFAULT_CMDLINE = "console=ttyS0 reboot=k panic=-1 quiet"
BOOT_TIMEOUT_S = 90.0
EXIT_TIMEOUT_S = 60.0

# Every live Vm, so that the run_tests.py watchdog can ask for their state and kill them.
LIVE = set()
_LIVE_LOCK = threading.Lock()
# Test-host hooks (tests/testhost/e2e.py): stall-report lines per vm; pids still there 1 s after a SIGKILL.
STALL_HOOKS = []
AFTER_SIGKILL = None
_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>c78])")


def timeout_scale():
    """The factor from $AMBER_E2E_TIMEOUT_SCALE (default 1.0) applied to every timeout."""
    try:
        return max(float(os.environ.get("AMBER_E2E_TIMEOUT_SCALE", "1")), 0.01)
    except ValueError:
        return 1.0


def scaled(seconds):
    return seconds * timeout_scale()


def clean_line(raw):
    """Decodes a console line and strips CR and terminal escape codes (firmware screen clears)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return _ANSI.sub("", text).replace("\r", "").rstrip("\n")


def kvm_native():
    """True when this machine has hardware virtualization (vmx/svm) and a usable /dev/kvm."""
    return cpu_has_hw_virt() and os.access("/dev/kvm", os.R_OK | os.W_OK)


class Vm:
    """One VMM process whose stdout is the guest console, read line by line into self.lines."""

    def __init__(self, argv, log_path, env=None, stdin=subprocess.DEVNULL, cwd=None):
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.lines = []
        self.stderr_lines = []
        self.returncode = None
        self._killed = False
        self._cond = threading.Condition()
        self._log = open(log_path, "a", buffering=1)
        self._log.write("$ %s\n" % " ".join(self.argv))
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=cwd,
                                     start_new_session=True)
        with _LIVE_LOCK:
            LIVE.add(self)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines, ""), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines, "[stderr] "),
                             daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, pipe, sink, prefix):
        for raw in iter(pipe.readline, b""):
            line = clean_line(raw)
            with self._cond:
                sink.append(line)
                self._log.write(prefix + line + "\n")
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def elapsed_s(self):
        return time.monotonic() - self.started_at

    def output(self):
        """The console seen so far, one string."""
        with self._cond:
            return "\n".join(self.lines)

    def tail(self, n=40):
        with self._cond:
            out = self.lines[-n:]
            err = self.stderr_lines[-n:]
        text = "--- console (last %d lines) ---\n%s" % (len(out), "\n".join(out))
        if err:
            text += "\n--- stderr (last %d lines) ---\n%s" % (len(err), "\n".join(err))
        return text

    def _eof(self):
        return not any(t.is_alive() for t in self._readers)

    def wait_for(self, pattern, timeout=BOOT_TIMEOUT_S, start=0):
        """Waits for a console line (from index start) matching the regex; returns the match.

        Raises AssertionError, with the console's tail, on timeout or if the VMM exits first.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + scaled(timeout)
        seen = start
        with self._cond:
            while True:
                while seen < len(self.lines):
                    m = regex.search(self.lines[seen])
                    seen += 1
                    if m:
                        return m
                if self._eof():
                    rc = self.proc.wait()
                    raise AssertionError("VMM exited with status %s before /%s/ appeared\n%s"
                                         % (rc, regex.pattern, self.tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    report = self.state_report()
                    raise AssertionError("timed out after %.0f s waiting for /%s/\n%s%s"
                                         % (scaled(timeout), regex.pattern, self.tail(), report))
                self._cond.wait(min(left, 0.5))

    def state_report(self, timeout=10):
        """amber's own view of a stalled guest: its SIGUSR2 state lines (vCPUs, devices, up to
        "state: end of report"), headed by a separator line; "" if the VMM is not a running
        amber. Waits up to timeout (scaled) seconds for the report's end (the wait releases
        self._cond, a re-entrant lock, while amber answers)."""
        with self._cond:
            if self.proc.poll() is not None or os.path.basename(self.argv[0]) != "amber":
                return ""
            start = len(self.stderr_lines)
            self.proc.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + scaled(timeout)
            while time.monotonic() < deadline and not any(
                    "state: end of report" in line for line in self.stderr_lines[start:]):
                self._cond.wait(0.2)
            lines = [line for line in self.stderr_lines[start:] if "state:" in line]
        lines += [extra for extra in (hook(self) for hook in STALL_HOOKS) if extra]
        return "\n--- amber state (SIGUSR2) ---\n%s" % "\n".join(lines) if lines else ""

    def wait_exit(self, timeout=EXIT_TIMEOUT_S):
        """Waits for the VMM to exit and returns its status (negative: killed by that signal).

        Raises AssertionError, with the console's tail, if it is still running after the timeout.
        """
        try:
            self.returncode = self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("VMM still running after %.0f s\n%s"
                                 % (scaled(timeout), self.tail())) from None
        for t in self._readers:
            t.join(5)
        return self.returncode

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def write(self, data):
        """Writes to the VMM's stdin (start it with stdin=subprocess.PIPE)."""
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def kill(self, grace_s=3.0):
        """SIGTERM, then SIGKILL to the whole process group after grace_s; always reaps.

        Returns the exit status; calling it again is harmless.
        """
        if self._killed:
            return self.returncode
        self._killed = True
        if self.alive():
            try:
                self.proc.terminate()
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.returncode = self.proc.wait(1.0 if AFTER_SIGKILL else None)
        except subprocess.TimeoutExpired:
            AFTER_SIGKILL([self.proc.pid])
            self.returncode = self.proc.wait()
        for t in self._readers:
            t.join(5)
        with _LIVE_LOCK:
            LIVE.discard(self)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self._log.write("[harness] exit status %s after %.1f s\n" % (self.returncode, self.elapsed_s()))
        self._log.close()
        return self.returncode


def amber_argv(kernel=VMLINUZ, initrd=None, cmdline=None, vcpus=None, mem_mib=None, console="stdio",
               drives=(), net=None, vsock=None, api_sock=None, extra=(), binary=AMBER):
    """Builds an amber command line. drives: dicts {path, ro, id, root} or ready 'path=...' strings.

    vsock: (cid, uds_path). Arguments left None are not passed, so amber's defaults apply.
    """
    def flags(*pairs):
        return [str(x) for flag, value in pairs if value is not None for x in (flag, value)]

    argv = [binary] + flags(("--kernel", kernel), ("--initrd", initrd), ("--cmdline", cmdline),
                            ("--vcpus", vcpus), ("--mem-mib", mem_mib), ("--console", console))
    for d in drives:
        spec = d if isinstance(d, str) else "path=%s%s%s%s" % (
            d["path"], ",ro" if d.get("ro") else "", ",id=%s" % d["id"] if d.get("id") else "",
            ",root" if d.get("root") else "")
        argv += ["--drive", spec]
    argv += flags(("--net", net and "tap=%s" % net), ("--vsock", vsock and "cid=%d,uds=%s" % tuple(vsock)),
                  ("--api-sock", api_sock))
    return argv + [str(a) for a in extra]


class Session:
    """A scratch directory under /tmp plus every VM started in it; close() kills and removes all."""

    def __init__(self, name="e2e", log_dir=None):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[-80:]
        self.dir = tempfile.mkdtemp(prefix="amber-%s-" % safe[-40:], dir="/tmp")
        self.log_dir = log_dir or os.environ.get("AMBER_E2E_LOGDIR") or self.dir
        os.makedirs(self.log_dir, exist_ok=True)
        self.log_path = os.path.join(self.log_dir, safe + ".log")
        self.vms = []

    def path(self, name):
        """A path inside the scratch directory (use it for sockets and images)."""
        return os.path.join(self.dir, name)

    def start(self, argv, **kw):
        """Starts any command as a Vm (its stdout is treated as the console)."""
        vm = Vm(argv, self.log_path, **kw)
        self.vms.append(vm)
        return vm

    def amber(self, initrd=False, cmdline=None, cmdline_extra="", **kw):
        """Starts build/amber. initrd=True uses the guest initramfs; cmdline defaults to
        DEFAULT_CMDLINE (plus root=/dev/vda when a drive is marked root) + cmdline_extra."""
        if not os.access(AMBER, os.X_OK):
            raise AssertionError("%s is missing: run make first" % AMBER)
        initrd = INITRAMFS if initrd is True else None if initrd is False else initrd
        if cmdline is None:
            cmdline = DEFAULT_CMDLINE
            if any(isinstance(d, dict) and d.get("root") for d in kw.get("drives", ())):
                cmdline += " root=/dev/vda"
        if cmdline_extra:
            cmdline += " " + cmdline_extra
        run = {k: kw.pop(k) for k in ("stdin", "env") if k in kw}
        return self.start(amber_argv(initrd=initrd, cmdline=cmdline, **kw), **run)

    def rootfs_copy(self, name="rootfs.ext4", files=None):
        """A sparse copy of build/guest/rootfs.ext4 in the scratch directory; returns its path.

        files maps guest paths to text or bytes written into the copy (e.g. {"/amber-run.sh": "..."}).
        """
        if not os.path.exists(ROOTFS):
            raise AssertionError("%s is missing: run make guest first" % ROOTFS)
        dst = sparse_copy(ROOTFS, self.path(name))
        for guest_path, content in (files or {}).items():
            local = self.path(".debugfs-src")
            with open(local, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
            cmds = "rm %s\nwrite %s %s\nsif %s mode 0100755\n" % (guest_path, local, guest_path, guest_path)
            res = subprocess.run(["debugfs", "-w", "-f", "-", dst], input=cmds.encode(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if res.returncode != 0:
                raise AssertionError("debugfs failed writing %s: %s" % (guest_path, res.stdout.decode()))
            os.unlink(local)
        return dst

    def close(self):
        for vm in self.vms:
            vm.kill()
        self.vms = []
        shutil.rmtree(self.dir, ignore_errors=True)


class AmberTestCase(unittest.TestCase):
    """A TestCase with a Session in self.session; amber(), start(), rootfs_copy() and path() forward to it."""

    def setUp(self):
        super().setUp()
        self.session = Session(self.id())
        self.addCleanup(self.session.close)
        self.amber, self.start = self.session.amber, self.session.start
        self.rootfs_copy, self.path = self.session.rootfs_copy, self.session.path


def long_tier(why):
    """Marks a test class or test as the long tier: `make test` sets AMBER_E2E_TIER=quick to stay
    inside its 25-minute budget, and there the test is skipped with this reason (counted and listed
    as a skip, never as a pass); `make e2e` runs every tier."""
    return unittest.skipIf(os.environ.get("AMBER_E2E_TIER") == "quick",
                           "long tier (%s): make e2e runs it; make test leaves it out of its time budget" % why)


def log(msg):
    """Prints a progress line from a test (stderr, so it interleaves with unittest's output)."""
    print("  [e2e] %s" % msg, file=sys.stderr, flush=True)
