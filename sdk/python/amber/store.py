"""The persistent store of hibernated sandboxes, templates and fork images (docs/hibernate.md).

Layout under the state root ($AMBER_STATE_DIR; else /var/lib/amber as root; else
$XDG_STATE_HOME/amber, or ~/.local/state/amber):
    <id>/                 a sandbox's persistent directory: rootfs.ext4 (its root drive once it
                          was hibernated or made from a template), config.json, and while it is
                          hibernated vm.snap, vm.mem and hibernated.json (written last: the
                          commit point; without it the directory holds no snapshot)
    .templates/<name>/    a template: vm.snap, vm.mem, rootfs.ext4, template.json
    .forks/<name>/        the image one fork() made; removed once no child uses it
    .lock                 flocked while the store is changed
Ids never start with a dot, so no sandbox id can name the template directories. amberctl
(ctl/ctl_hibernate.c, ctl/ctl_template.c) uses the same layout.
"""
import errno
import fcntl
import json
import os
import secrets
import shutil
import time

from . import runtime

STATE_FILE = "vm.snap"
MEM_FILE = "vm.mem"
ROOTFS = "rootfs.ext4"
MARK = "hibernated.json"
TEMPLATE_META = "template.json"
TEMPLATES = ".templates"
FORKS = ".forks"
FICLONE = 0x40049409  # _IOW(0x94, 9, int): share the source's extents (btrfs, xfs, ...)
CID_MIN, CID_MAX = 3, 0xFFFFFFFE


def state_root(env=None):
    """$AMBER_STATE_DIR; /var/lib/amber as root; else $XDG_STATE_HOME/amber (~/.local/state)."""
    env = os.environ if env is None else env
    if env.get("AMBER_STATE_DIR"):
        return env["AMBER_STATE_DIR"]
    if os.geteuid() == 0:
        return "/var/lib/amber"
    xdg = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "amber")


def ensure(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def sandbox_dir(sandbox_id, root=None):
    return os.path.join(root or state_root(), sandbox_id)


def template_dir(name, root=None):
    return os.path.join(root or state_root(), TEMPLATES, name)


def forks_root(root=None):
    return os.path.join(root or state_root(), FORKS)


def lock(root=None):
    """The store's lock (a runtime.FileLock context)."""
    return runtime.FileLock(os.path.join(ensure(root or state_root()), ".lock"))


def read_json(path):
    """path's JSON object, or None if it is missing or not a JSON object."""
    try:
        with open(path) as f:
            v = json.load(f)
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def write_json(path, obj, sync=False):
    """Writes obj to path through a temporary file and a rename (fsynced when sync)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path))


def fsync_dir(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clone_file(src, dst):
    """dst as a copy-on-write clone of src (FICLONE) where the file system can; else a sparse
    copy. Returns "reflink" or "sparse". Raises OSError (ENOSPC among them)."""
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            fcntl.ioctl(fd, FICLONE, fin.fileno())
            return "reflink"
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
                raise
        finally:
            os.close(fd)
    _sparse_copy_checked(src, dst)
    return "sparse"


def _sparse_copy_checked(src, dst):
    # runtime.sparse_copy falls back silently on a cp failure; here a full disk must surface.
    runtime._sparse_copy_py(src, dst)


def valid_name(name):
    """Template names follow sandbox ids: [A-Za-z0-9_-]{1,64}."""
    return runtime.valid_id(name)


def new_cid(taken):
    """A random vsock guest CID in [3, 2^32-2] not in taken."""
    while True:
        cid = CID_MIN + secrets.randbelow(CID_MAX - CID_MIN + 1)
        if cid not in taken:
            return cid


def new_machine_id():
    """32 lowercase hex digits, as /etc/machine-id holds."""
    return secrets.token_hex(16)


def is_hibernated(d):
    return os.path.exists(os.path.join(d, MARK))


def hibernated_ids(root=None):
    """Ids whose persistent directory holds a committed snapshot, sorted."""
    root = root or state_root()
    return [i for i in runtime.list_ids(root) if is_hibernated(os.path.join(root, i))]


def sandbox_users(run_root, root=None):
    """{image directory: [sandbox ids]} of every sandbox (live or hibernated) started from a
    template or fork image. Live ones are read from the runtime directory's config.json."""
    root = root or state_root()
    users = {}

    def add(cfg, sid):
        src = (cfg or {}).get("image_dir")
        if src:
            users.setdefault(os.path.realpath(src), []).append(sid)

    for i in runtime.list_ids(run_root):
        d = os.path.join(run_root, i)
        if runtime.probe(d) in (runtime.ALIVE, runtime.STARTING):
            add(read_json(os.path.join(d, "config.json")), i)
    for i in runtime.list_ids(root):
        d = os.path.join(root, i)
        if is_hibernated(d):
            add(read_json(os.path.join(d, "config.json")), i)
        elif runtime.probe(os.path.join(run_root, i)) != runtime.MISSING:
            add(read_json(os.path.join(d, "config.json")), i)  # the creator is still at work
    return users


def gc(run_root, root=None, min_age_s=60.0):
    """Removes what nothing uses: fork images no sandbox was started from, and persistent
    directories without a snapshot whose sandbox is gone (older than min_age_s, so one being
    made is left alone). Call it with the store's lock held."""
    root = root or state_root()
    now = time.time()
    users = sandbox_users(run_root, root)

    def old(d):
        try:
            return now - os.stat(d).st_mtime >= min_age_s
        except OSError:
            return False

    for i in runtime.list_ids(root):
        d = os.path.join(root, i)
        if not is_hibernated(d) and runtime.probe(os.path.join(run_root, i)) == runtime.MISSING and old(d):
            shutil.rmtree(d, ignore_errors=True)
    fr = forks_root(root)
    for name in runtime.list_ids(fr):
        d = os.path.join(fr, name)
        if os.path.realpath(d) not in users and old(d):
            shutil.rmtree(d, ignore_errors=True)


def list_templates(root=None):
    """[template.json records] sorted by name (each with "name", "created_at", "source_id")."""
    tr = os.path.join(root or state_root(), TEMPLATES)
    out = []
    for name in runtime.list_ids(tr):
        meta = read_json(os.path.join(tr, name, TEMPLATE_META))
        if meta is not None:
            meta["name"] = name
            out.append(meta)
    return out
