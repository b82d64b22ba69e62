"""The runtime directory (docs/design.md, "Client side"): paths, ids, flock liveness, cleanup.

Layout: <root>/<id>/ with api.sock, vsock.sock, console.log, amber.pid (flocked by amber while
it lives), config.json, exit.json, rootfs.ext4, and amber.stdout/amber.stderr. <root> is
$XDG_RUNTIME_DIR/amber or /tmp/amber-<uid>. The SDK also keeps starting.lock, flocked by the
creating process until the sandbox answers, so nobody mistakes a booting sandbox for a stale one.
"""
import errno
import fcntl
import json
import os
import re
import shutil
import subprocess
import time

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A directory younger than this without amber.pid is an amber still starting (as amberctl).
STARTING_GRACE_S = 30

ALIVE, STARTING, STALE, MISSING = "alive", "starting", "stale", "missing"


def valid_id(sandbox_id):
    """True if sandbox_id matches [A-Za-z0-9_-]{1,64}."""
    return isinstance(sandbox_id, str) and ID_RE.fullmatch(sandbox_id) is not None


def runtime_root(env=None):
    """$XDG_RUNTIME_DIR/amber, or /tmp/amber-<uid> without XDG_RUNTIME_DIR."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "amber")
    return "/tmp/amber-%d" % os.getuid()


def ensure_root(root):
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def _try_flock(path, flags):
    """0 if the lock on path could be taken (and was released), 1 if it is held, -1 if no file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, flags | fcntl.LOCK_NB)
    except BlockingIOError:
        return 1
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return 0


def read_pid(d):
    try:
        with open(os.path.join(d, "amber.pid")) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def probe(d, now=None):
    """The liveness of sandbox directory d: ALIVE (amber.pid is flocked), STARTING (its creator
    holds starting.lock, or no amber.pid yet in a young directory), STALE, or MISSING."""
    try:
        st = os.stat(d)
    except FileNotFoundError:
        return MISSING
    if _try_flock(os.path.join(d, "amber.pid"), fcntl.LOCK_SH) == 1:
        return ALIVE
    if _try_flock(os.path.join(d, "starting.lock"), fcntl.LOCK_SH) == 1:
        return STARTING
    if not os.path.exists(os.path.join(d, "amber.pid")):
        now = time.time() if now is None else now
        if now - st.st_mtime < STARTING_GRACE_S:
            return STARTING
    return STALE


def exit_record(d):
    """exit.json as a dict ({"reason", "status"}), or None."""
    try:
        with open(os.path.join(d, "exit.json")) as f:
            rec = json.load(f)
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def describe_exit(rec, fallback="its amber process ended without writing exit.json (killed?)"):
    if not rec:
        return fallback
    reason = rec.get("reason") or "unknown reason"
    if "status" in rec:
        return "%s (status %s)" % (reason, rec.get("status"))
    return str(reason)


def remove_dir(d):
    shutil.rmtree(d, ignore_errors=True)


def list_ids(root):
    """Every well-formed sandbox id with a directory under root (any liveness), sorted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if valid_id(n) and os.path.isdir(os.path.join(root, n)))


def count_live(root):
    """Sandboxes that hold resources: ALIVE or STARTING (paused ones are alive)."""
    return sum(1 for i in list_ids(root) if probe(os.path.join(root, i)) in (ALIVE, STARTING))


class FileLock:
    """An exclusive flock on path (created if needed), held while the context is open."""

    def __init__(self, path, blocking=True):
        self.path = path
        self.blocking = blocking
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __exit__(self, *exc):
        self.release()


def sparse_copy(src, dst):
    """Copies src to dst keeping holes: `cp --sparse=always` when there is one, else in Python
    (SEEK_DATA/SEEK_HOLE, and all-zero 1 MiB blocks left as holes)."""
    cp = shutil.which("cp")
    if cp:
        r = subprocess.run([cp, "--sparse=always", "--", src, dst], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if r.returncode == 0:
            return dst
    _sparse_copy_py(src, dst)
    return dst


def _data_ranges(fd, size):
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            yield off, size  # no SEEK_DATA here: treat the rest as data
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        off = end


def _sparse_copy_py(src, dst):
    block = 1 << 20
    zero = bytes(block)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        for start, end in list(_data_ranges(fin.fileno(), size)):
            pos = start
            while pos < end:
                n = min(block, end - pos)
                fin.seek(pos)
                chunk = fin.read(n)
                if not chunk:
                    break
                if chunk != zero[: len(chunk)]:
                    fout.seek(pos)
                    fout.write(chunk)
                pos += len(chunk)
        fout.truncate(size)


def cpu_has_hw_virt():
    """True when this CPU shows hardware virtualization (vmx or svm); the one such check."""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^flags\s*:(.*)$", f.read(), re.M)
        return m is not None and re.search(r"\b(vmx|svm)\b", m.group(1)) is not None
    except OSError:
        return False


def in_test_host():
    """True inside scripts/testhost.sh's QEMU TCG VM (its init passes amber.job=), whose CPU
    shows an emulated svm flag."""
    try:
        with open("/proc/cmdline") as f:
            return "amber.job=" in f.read()
    except OSError:
        return False


def timeout_scale(env=None):
    """$AMBER_TIMEOUT_SCALE if set; else 10 in the test host or without vmx/svm, 1 otherwise."""
    env = os.environ if env is None else env
    v = env.get("AMBER_TIMEOUT_SCALE")
    if v:
        try:
            return max(float(v), 0.01)
        except ValueError:
            pass
    if in_test_host() or not cpu_has_hw_virt():
        return 10.0
    return 1.0


def repo_root():
    """The amber checkout this SDK lives in ($AMBER_REPO overrides)."""
    env = os.environ.get("AMBER_REPO")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(os.path.dirname(here)))


def default_paths():
    """{'amber', 'kernel', 'initrd', 'rootfs'} from the build tree ($AMBER_BIN, $AMBER_KERNEL,
    $AMBER_INITRD, $AMBER_ROOTFS override each)."""
    build = os.path.join(repo_root(), "build")
    return {
        "amber": os.environ.get("AMBER_BIN") or os.path.join(build, "amber"),
        "kernel": os.environ.get("AMBER_KERNEL") or os.path.join(build, "guest", "vmlinuz"),
        "initrd": os.environ.get("AMBER_INITRD") or os.path.join(build, "guest", "initramfs.cpio.gz"),
        "rootfs": os.environ.get("AMBER_ROOTFS") or os.path.join(build, "guest", "rootfs.ext4"),
    }


def tail_file(path, n=15, max_bytes=16384):
    """The last n lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").replace("\r", "").splitlines()
    return "\n".join(lines[-n:])
