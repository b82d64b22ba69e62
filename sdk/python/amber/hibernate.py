"""Hibernate: a sandbox paused to disk (snapshot + root drive in its persistent directory, amber
ended) and brought back in a new amber; and the restored launch that templates and fork share.

The flows (*_steps) are generators of flow.py steps: Sandbox runs them blocking, AsyncSandbox on
its event loop. See store.py for the layout and docs/hibernate.md for the rules.
"""
import contextlib
import errno
import os
import signal
import time

from . import flow, lifetime, runtime, store
from . import network as sbxnet
from .errors import (SandboxClientError, SandboxError, SandboxNotFoundError, SandboxUnavailableError)

SNAPSHOT_TIMEOUT_S = 120.0  # writing guest RAM; multiplied by the timeout scale
RESTORE_TIMEOUT_S = 30.0  # amber start to agent answering; multiplied by the timeout scale
DRIVE_ID = "drive0"  # the id amber gives the SDK's one --drive


def _sdk():
    from . import sandbox  # late: sandbox.py imports this module
    return sandbox


def persistent_dir(sandbox_id):
    return store.sandbox_dir(sandbox_id)


def is_hibernated(sandbox_id, runtime_root=None):
    """True if sandbox_id has a committed snapshot on disk and no live amber. A runtime
    directory whose amber has ended (one that outlived hibernate's wait for its SIGKILL) does
    not count: restoring replaces it."""
    d = os.path.join(runtime_root or runtime.runtime_root(), sandbox_id)
    return (store.is_hibernated(persistent_dir(sandbox_id))
            and runtime.probe(d) in (runtime.MISSING, runtime.STALE))


def stored_config(sandbox_id):
    return store.read_json(os.path.join(persistent_dir(sandbox_id), "config.json")) or {}


def info(sbx):
    """GET /'s record for a hibernated sandbox."""
    mark = store.read_json(os.path.join(persistent_dir(sbx.id), store.MARK)) or {}
    return {"id": sbx.id, "state": "Hibernated", "paused_at": mark.get("paused_at"),
            "hibernated_at": mark.get("hibernated_at"), "memory": "disk"}


# --------------------------------------------------------------------------- hibernate
def pause_for_snapshot_steps(sbx):
    """Pauses sbx unless it is paused; returns (was_running, paused_at)."""
    rec = yield flow.Api(sbx, "GET", "/")
    if rec.get("state") == "Paused":
        return False, rec.get("paused_at")
    r = yield flow.Api(sbx, "POST", "/pause")
    return True, r.get("paused_at")


def snapshot_step(sbx, d, sync):
    """PUT /snapshot/create into directory d (vm.snap, vm.mem)."""
    body = {"snapshot_path": os.path.join(d, store.STATE_FILE),
            "mem_file_path": os.path.join(d, store.MEM_FILE), "snapshot_type": "Full"}
    if sync:
        body["fsync"] = True
    return flow.Api(sbx, "PUT", "/snapshot/create", body=body, timeout=sbx._scaled_s(SNAPSHOT_TIMEOUT_S))


def set_timeout_step(sbx, timeout, on_timeout):
    """PUT /timeout, as sbx.set_timeout(timeout, on_timeout)."""
    return flow.Api(sbx, "PUT", "/timeout", body={"timeout_s": lifetime.check_timeout(timeout, sbx.id),
                                                  "on_timeout": lifetime.check_on_timeout(on_timeout, sbx.id)})


def _no_space(e):
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        "No space left" in str(e) or "Disk quota" in str(e)


def hibernate(sbx):
    """sbx.pause(keep_memory=False): pause, full snapshot and root drive into the persistent
    directory, end amber. Returns {"sandbox_id", "paused": True, "paused_at", "memory": "disk"}.
    On any failure (a full disk among them) the sandbox stays paused in memory and
    SandboxClientError says so (status 507 for a full disk)."""
    return flow.run_sync(hibernate_steps(sbx))


def hibernate_steps(sbx):
    """hibernate()'s flow."""
    sbxnet.refuse(sbx, "pause(keep_memory=False)")
    sbx._ensure()
    cfg = sbx._read_config()
    _, paused_at = yield from pause_for_snapshot_steps(sbx)
    pd = store.ensure(persistent_dir(sbx.id))
    made = []
    rootfs = os.path.join(pd, store.ROOTFS)
    try:
        timeout_rec = yield flow.Api(sbx, "GET", "/timeout")
        if os.path.realpath(cfg.get("rootfs", "")) != os.path.realpath(rootfs):
            made.append(rootfs)
            yield flow.Io(store.clone_file, cfg["rootfs"], rootfs)
        made += [os.path.join(pd, store.STATE_FILE), os.path.join(pd, store.MEM_FILE)]
        yield snapshot_step(sbx, pd, sync=True)
        cfg = dict(cfg, rootfs=rootfs, state_dir=pd, drive_id=cfg.get("drive_id", DRIVE_ID))
        cfg.pop("image_dir", None)  # a full snapshot of its own: the template may go
        if timeout_rec.get("timeout_s_left") is not None:
            cfg["timeout_s_left"] = timeout_rec["timeout_s_left"]
            cfg["on_timeout"] = timeout_rec.get("on_timeout", "kill")
        else:
            cfg.pop("timeout_s_left", None)
        yield flow.Io(store.write_json, os.path.join(pd, "config.json"), cfg, True)
        made.append(os.path.join(pd, "config.json"))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        yield flow.Io(store.write_json, os.path.join(pd, store.MARK),
                      {"sandbox_id": sbx.id, "paused_at": paused_at, "hibernated_at": now}, True)
    except (SandboxError, OSError) as e:
        for p in made:
            try:
                os.unlink(p)
            except OSError:
                pass
        status = 507 if _no_space(e) else 500
        msg = getattr(e, "message", None) or str(e)
        raise SandboxClientError(
            "sandbox %s: hibernate failed: %s. Nothing is lost: the sandbox is still paused in "
            "memory; resume() it, or free space in %s and hibernate again" % (sbx.id, msg, pd),
            status=status, sandbox_id=sbx.id) from None
    yield from _end_amber_steps(sbx)
    return {"sandbox_id": sbx.id, "paused": True, "paused_at": paused_at, "memory": "disk"}


def _end_amber_steps(sbx):
    """Ends the paused amber (its state is on disk) and removes the runtime directory."""
    sdk = _sdk()
    pid = runtime.read_pid(sbx.dir)
    if pid:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
        if pidfd is not None:
            try:
                if runtime.probe(sbx.dir) == runtime.ALIVE:  # still amber's pid
                    sdk._signal(pidfd, pid, signal.SIGKILL)
                    if not (yield flow.WaitExit(pidfd, sdk._scaled(sdk.KILL_WAIT_S))):
                        raise sdk._still_running(sbx.id, pid, "its snapshot is safe on disk: resume() works once it is gone")
            finally:
                os.close(pidfd)
    sdk._reap_child(pid)
    runtime.remove_dir(sbx.dir)


# --------------------------------------------------------------------------- restored launch
def _wait_api_steps(proc, path, deadline):
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        yield flow.Sleep(0.01)
    return False


def _launch_empty(sbx, amber):
    """Starts amber with only an API socket in sbx.dir (its own session), as create() does."""
    d = sbx.dir
    argv = [amber, "--id", sbx.id, "--api-sock", sbx.api_sock, "--console", sbx.console_path,
            "--pid-file", os.path.join(d, "amber.pid"), "--exit-file", os.path.join(d, "exit.json")]
    sbx._spawn(argv)
    return argv


def _load_steps(sbx, image_dir, drive_id, drive_path, cid, deadline):
    """PUT /snapshot/load of image_dir's files onto this sandbox's sockets and drive."""
    snap = os.path.join(image_dir, store.STATE_FILE)
    if not (yield from _wait_api_steps(sbx._proc, sbx.api_sock, deadline)):
        raise SandboxUnavailableError(sbx._early_exit_message(sbx._proc.poll() or 0)
                                      if sbx._proc.poll() is not None else
                                      "sandbox %s: amber's API socket did not appear" % sbx.id, sbx.id)
    body = {"snapshot_path": snap,
            "mem_backend": {"backend_type": "File",
                            "backend_path": os.path.join(image_dir, store.MEM_FILE)},
            "resume_vm": True, "vsock_override": {"uds_path": sbx.vsock_sock, "guest_cid": cid},
            "drive_overrides": [{"drive_id": drive_id, "path_on_host": drive_path}]}
    while True:
        try:
            r = yield flow.Request(sbx.api_sock, "PUT", "/snapshot/load", body,
                                   max(1.0, deadline - time.monotonic()))
            break
        except ConnectionRefusedError as e:  # bound, not yet listening
            if time.monotonic() >= deadline or sbx._proc.poll() is not None:
                raise SandboxUnavailableError("sandbox %s: PUT /snapshot/load: %s" % (sbx.id, e), sbx.id) from None
            yield flow.Sleep(0.01)
        except OSError as e:
            raise SandboxUnavailableError("sandbox %s: PUT /snapshot/load: %s" % (sbx.id, e), sbx.id) from None
    if r.status >= 300:
        raise SandboxNotFoundError("sandbox %s: cannot restore %s: %s" % (sbx.id, snap, r.fault), sbx.id)


def restore_steps(cls, sandbox_id, image_dir, config, prepare_drive, runtime_dir=None, max_sandboxes=None,
                  boot_timeout=None, hold=None, precheck=None):
    """A new sandbox sandbox_id restored from image_dir's snapshot; returns it running with its
    agent answering. prepare_drive() (file work: an Io step) is called once the runtime
    directory is registered (so the image counts as used) and returns the root drive's path. config is the config.json to keep
    (api/vsock paths, rootfs and argv are filled in). hold, if given, is a context (the store's
    lock) held while precheck() runs and the sandbox is registered. Raises as create() does; nothing is left behind
    on failure except what prepare_drive made."""
    sdk = _sdk()
    paths = runtime.default_paths()
    amber = paths["amber"]
    if not os.access(amber, os.X_OK):
        raise SandboxUnavailableError("%s is missing: build it with `make`" % amber)
    sdk._check_kvm()
    timeout = sdk._scaled(RESTORE_TIMEOUT_S) if boot_timeout is None else float(boot_timeout)
    root = runtime.ensure_root(runtime_dir or runtime.runtime_root())
    d = os.path.join(root, sandbox_id)
    starting = runtime.FileLock(os.path.join(d, "starting.lock"))
    sbx = cls(sandbox_id, d)
    with contextlib.ExitStack() as stack:
        if hold is not None:
            stack.enter_context(hold)
        if precheck is not None:
            precheck()
        stack.enter_context(runtime.FileLock(os.path.join(root, ".lock")))
        if max_sandboxes is not None:
            live = [i for i in runtime.list_ids(root)
                    if runtime.probe(os.path.join(root, i)) in (runtime.ALIVE, runtime.STARTING)]
            if len(live) >= max_sandboxes:
                raise SandboxClientError(
                    "sandbox limit reached: %d of max_sandboxes=%d already running or paused in %s"
                    % (len(live), max_sandboxes, root), status=429)
        existing = runtime.probe(d)
        if existing == runtime.STALE:
            sdk._reap_child(runtime.read_pid(d))
            runtime.remove_dir(d)
        elif existing != runtime.MISSING:
            raise SandboxClientError("sandbox %s already exists" % sandbox_id, status=409,
                                     sandbox_id=sandbox_id)
        os.mkdir(d, 0o700)
        starting.__enter__()
        sbx.config = dict(config, id=sandbox_id, api_sock=sbx.api_sock, vsock_uds=sbx.vsock_sock,
                          console=sbx.console_path, creator_pid=os.getpid())
        store.write_json(os.path.join(d, "config.json"), sbx.config)
    plan = {"starting": starting, "deadline": time.monotonic() + timeout, "boot_timeout": timeout}
    try:
        drive = yield flow.Io(prepare_drive)
        sbx.config["rootfs"] = drive
        sbx.config["argv"] = _launch_empty(sbx, amber)
        store.write_json(os.path.join(d, "config.json"), sbx.config)
        yield from _load_steps(sbx, image_dir, config.get("drive_id", DRIVE_ID), drive, sbx.config["guest_cid"],
                               plan["deadline"])
        yield flow.Ready(sbx, plan["deadline"], timeout)
    except BaseException:
        sbx._create_fail(plan)
        raise
    sbx._create_end(plan)
    return sbx


# --------------------------------------------------------------------------- resume
def resume(cls, sandbox_id, runtime_dir=None):
    """Restores a hibernated sandbox in a new amber; returns (sandbox, resume record). The
    snapshot files are removed once it runs; its root drive stays in the persistent directory.
    Raises SandboxNotFoundError if there is no snapshot, or a file is missing or corrupt (the
    message names it; the files are kept)."""
    return flow.run_sync(resume_steps(cls, sandbox_id, runtime_dir))


def resume_steps(cls, sandbox_id, runtime_dir=None):
    """resume()'s flow."""
    pd = persistent_dir(sandbox_id)
    t0 = time.monotonic()
    held = yield flow.Lock(os.path.join(store.ensure(store.state_root()), ".resume-%s.lock" % sandbox_id))
    try:
        root = runtime_dir or runtime.runtime_root()
        if not store.is_hibernated(pd):
            if runtime.probe(os.path.join(root, sandbox_id)) in (runtime.ALIVE, runtime.STARTING):
                return cls.get(sandbox_id, runtime_dir=runtime_dir), None  # resumed meanwhile
            raise SandboxNotFoundError("sandbox %s is not hibernated (no %s)" % (sandbox_id, os.path.join(pd, store.MARK)),
                                       sandbox_id)
        mark = store.read_json(os.path.join(pd, store.MARK)) or {}
        cfg = store.read_json(os.path.join(pd, "config.json"))
        need = [os.path.join(pd, f) for f in (store.STATE_FILE, store.MEM_FILE, store.ROOTFS)]
        missing = [p for p in need if not os.path.isfile(p)]
        if cfg is None:
            missing.insert(0, os.path.join(pd, "config.json") + " (missing or not JSON)")
        if missing:
            raise SandboxNotFoundError("sandbox %s cannot be resumed: missing %s"
                                       % (sandbox_id, ", ".join(missing)), sandbox_id)
        sbx = yield from restore_steps(cls, sandbox_id, pd, cfg, lambda: os.path.join(pd, store.ROOTFS),
                                       runtime_dir=runtime_dir)
        # It runs: the snapshot goes (the commit mark first, so no mark outlives its files).
        for f in (store.MARK, store.STATE_FILE, store.MEM_FILE):
            try:
                os.unlink(os.path.join(pd, f))
            except OSError:
                pass
    finally:
        held.release()
    if cfg.get("timeout_s_left") is not None:
        yield set_timeout_step(sbx, max(1, cfg["timeout_s_left"]), cfg.get("on_timeout", "kill"))
    return sbx, {"sandbox_id": sandbox_id, "paused": False, "memory": "disk",
                 "resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "paused_at": mark.get("paused_at"), "restore_ms": int((time.monotonic() - t0) * 1000)}


def list_hibernated(cls, runtime_dir=None):
    """Sandbox objects for every hibernated sandbox (no live amber), sorted by id."""
    root = runtime_dir or runtime.runtime_root()
    out = []
    for i in store.hibernated_ids():
        if runtime.probe(os.path.join(root, i)) == runtime.MISSING:
            sbx = cls(i, os.path.join(root, i), stored_config(i))
            out.append(sbx)
    return out


def delete(sandbox_id):
    """Removes a hibernated sandbox's persistent directory."""
    runtime.remove_dir(persistent_dir(sandbox_id))
