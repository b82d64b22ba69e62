"""Templates and fork: a snapshot of a prepared sandbox that new sandboxes restore from.

Every child maps the image's one memory file MAP_PRIVATE (amber's restore), so children share
its page cache and pay only for the pages they write. Each child gets its own root drive (a
reflink clone where the file system can, else a sparse copy), id, vsock CID and socket, and the
agent gives it a new hostname, /etc/machine-id and host randomness; amber corrects the clock and
(with the VM Generation ID device) makes the kernel reseed its RNG. See docs/hibernate.md.

The flows (*_steps) are generators of flow.py steps: Sandbox runs them blocking, AsyncSandbox on
its event loop.
"""
import os
import secrets
import shutil
import time

from . import flow, hibernate, lifetime, runtime, store
from . import network as sbxnet
from .errors import SandboxClientError, SandboxError, SandboxNotFoundError

IDENTITY_TIMEOUT_S = 10.0  # multiplied by the timeout scale
# Run as root by the agent: host randomness credited to the pool and the CRNG reseeded
# (`amber-agent reseed`; an older guest without it gets the bytes mixed in by a write), then the
# machine's identity. $1 machine-id, $2 hostname.
IDENTITY_SCRIPT = ('{ amber-agent reseed 2>/dev/null || cat > /dev/urandom; } && '
                   'printf "%s\\n" "$1" > /etc/machine-id && hostname "$2" && '
                   'printf "%s\\n" "$2" > /etc/hostname')


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def set_identity(sbx, hostname, machine_id):
    """The step that makes a restored child its own machine through the agent (tests replace
    this with a step that records the call)."""
    return flow.Exec(sbx, ["/bin/sh", "-c", IDENTITY_SCRIPT, "sh", machine_id, hostname],
                     secrets.token_bytes(64), sbx._scaled_s(IDENTITY_TIMEOUT_S),
                     "setting its hostname and machine-id")


def _make_image_steps(sbx, d):
    """Snapshot sbx into directory d (vm.snap, vm.mem, rootfs.ext4). A running sandbox is paused
    for it and resumed after; returns (clone kind, pause ms)."""
    cfg = sbx._read_config()
    was_running, _ = yield from hibernate.pause_for_snapshot_steps(sbx)
    t0 = time.monotonic()
    try:
        kind = yield flow.Io(store.clone_file, cfg["rootfs"], os.path.join(d, store.ROOTFS))
        yield hibernate.snapshot_step(sbx, d, sync=False)
    finally:
        if was_running:
            yield flow.Api(sbx, "POST", "/resume")
    return kind, int((time.monotonic() - t0) * 1000)


def _image_failed(sbx, what, d, e):
    shutil.rmtree(d, ignore_errors=True)
    msg = getattr(e, "message", None) or str(e)
    status = 507 if hibernate._no_space(e) else getattr(e, "status", 500)
    return SandboxClientError("sandbox %s: %s failed: %s" % (sbx.id, what, msg), status=status,
                              sandbox_id=sbx.id)


def snapshot_template(sbx, name):
    """sbx.snapshot_template(name): the template record (template.json)."""
    return flow.run_sync(snapshot_template_steps(sbx, name))


def snapshot_template_steps(sbx, name):
    """snapshot_template()'s flow."""
    sbxnet.refuse(sbx, "snapshot_template()")
    if not store.valid_name(name):
        raise SandboxClientError("bad template name %r: names match [A-Za-z0-9_-]{1,64}" % (name,),
                                 status=400, sandbox_id=sbx.id)
    sbx._ensure()
    final = store.template_dir(name)
    tr = store.ensure(os.path.dirname(final))
    if os.path.exists(final):
        raise SandboxClientError("template %s already exists" % name, status=409, sandbox_id=sbx.id)
    tmp = os.path.join(tr, ".%s.tmp-%s" % (name, secrets.token_hex(4)))
    os.mkdir(tmp, 0o700)
    cfg = sbx._read_config()
    try:
        kind, pause_ms = yield from _make_image_steps(sbx, tmp)
        meta = {"name": name, "created_at": _now(), "source_id": sbx.id, "vcpus": cfg.get("vcpus"),
                "mem_mib": cfg.get("mem_mib"), "drive_id": cfg.get("drive_id", hibernate.DRIVE_ID),
                "envs": cfg.get("envs") or {}, "metadata": cfg.get("metadata") or {},
                "rootfs_copy": kind, "pause_ms": pause_ms}
        store.write_json(os.path.join(tmp, store.TEMPLATE_META), meta)
        with store.lock():
            if os.path.exists(final):
                raise SandboxClientError("template %s already exists" % name, status=409,
                                         sandbox_id=sbx.id)
            os.rename(tmp, final)
    except (SandboxError, OSError) as e:
        raise _image_failed(sbx, "template %s" % name, tmp, e) from None
    return meta


def list_templates():
    return store.list_templates()


def delete_template(name, runtime_dir=None):
    """Removes template name; refuses (409, naming them) while sandboxes started from it live
    or are hibernated with it as their memory."""
    if not store.valid_name(name):
        raise SandboxClientError("bad template name %r" % (name,), status=400)
    d = store.template_dir(name)
    with store.lock():
        if not os.path.isdir(d):
            raise SandboxNotFoundError("no template %s (no %s)" % (name, d))
        users = store.sandbox_users(runtime_dir or runtime.runtime_root()).get(os.path.realpath(d), [])
        if users:
            raise SandboxClientError("template %s is in use by %d sandbox(es): %s; delete them first"
                                     % (name, len(users), ", ".join(sorted(users))), status=409)
        shutil.rmtree(d)


def _taken_cids(root):
    cids = set()
    for i in runtime.list_ids(root):
        cfg = store.read_json(os.path.join(root, i, "config.json")) or {}
        if isinstance(cfg.get("guest_cid"), int):
            cids.add(cfg["guest_cid"])
    return cids


def _one_child_steps(cls, image_dir, meta, sid, cid, extra, runtime_dir, max_sandboxes, boot_timeout):
    pd = store.sandbox_dir(sid)

    def precheck():
        if not os.path.isfile(os.path.join(image_dir, store.STATE_FILE)):
            raise SandboxNotFoundError("no template image in %s (deleted?)" % image_dir)

    def prepare_drive():
        store.ensure(pd)
        drive = os.path.join(pd, store.ROOTFS)
        store.clone_file(os.path.join(image_dir, store.ROOTFS), drive)
        return drive

    config = {"vcpus": meta.get("vcpus"), "mem_mib": meta.get("mem_mib"), "guest_cid": cid,
              "agent_port": hibernate._sdk().AGENT_PORT, "drive_id": meta.get("drive_id", hibernate.DRIVE_ID),
              "image_dir": image_dir, "state_dir": pd, "created_by": "amber-sdk-python",
              "created_at": _now(), "machine_id": store.new_machine_id()}
    config.update(extra)
    try:
        sbx = yield from hibernate.restore_steps(cls, sid, image_dir, config, prepare_drive,
                                                 runtime_dir=runtime_dir, max_sandboxes=max_sandboxes,
                                                 boot_timeout=boot_timeout, hold=store.lock(),
                                                 precheck=precheck)
    except BaseException:
        shutil.rmtree(pd, ignore_errors=True)
        raise
    try:
        yield set_identity(sbx, sid, config["machine_id"])
    except BaseException:
        try:
            yield flow.Delete(sbx)
        except SandboxError:
            pass
        raise
    return sbx


def create_children_steps(cls, image_dir, n, extra, runtime_dir=None, max_sandboxes=None, boot_timeout=None,
                          timeout=None, on_timeout="kill", ids=None):
    """n sandboxes restored from image_dir at once; all or none (the made ones are deleted if one
    fails). extra is merged into each config.json."""
    meta = store.read_json(os.path.join(image_dir, store.TEMPLATE_META))
    if meta is None:
        raise SandboxNotFoundError("no template image in %s (missing %s)" % (image_dir, store.TEMPLATE_META))
    lifetime_s = None if timeout is None else lifetime.check_timeout(timeout)
    on_timeout = lifetime.check_on_timeout(on_timeout)
    root = runtime_dir or runtime.runtime_root()
    ids = list(ids or ["sbx-" + secrets.token_hex(4) for _ in range(n)])
    for sid in ids:
        if not runtime.valid_id(sid):
            raise SandboxClientError("bad sandbox id %r: ids match [A-Za-z0-9_-]{1,64}" % (sid,), status=400)
    taken = _taken_cids(root)
    cids = []
    for _ in ids:
        cids.append(store.new_cid(taken))
        taken.add(cids[-1])
    results = yield flow.Parallel(_one_child_steps(cls, image_dir, meta, sid, cid, extra, runtime_dir,
                                                   max_sandboxes, boot_timeout) for sid, cid in zip(ids, cids))
    made = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for s in made:
            try:
                yield flow.Delete(s)
            except SandboxError:
                pass
        raise errors[0]
    if lifetime_s is not None:
        for s in made:
            yield hibernate.set_timeout_step(s, lifetime_s, on_timeout)
    return made


def create_from_template(cls, name, runtime_dir=None, max_sandboxes=None, boot_timeout=None, timeout=None,
                         on_timeout="kill", metadata=None, envs=None, sandbox_id=None):
    """Sandbox.create(template=name)."""
    return flow.run_sync(create_from_template_steps(cls, name, runtime_dir, max_sandboxes, boot_timeout,
                                                    timeout, on_timeout, metadata, envs, sandbox_id))


def create_from_template_steps(cls, name, runtime_dir=None, max_sandboxes=None, boot_timeout=None, timeout=None,
                               on_timeout="kill", metadata=None, envs=None, sandbox_id=None):
    """create_from_template()'s flow."""
    if not store.valid_name(name):
        raise SandboxClientError("bad template name %r" % (name,), status=400)
    d = store.template_dir(name)
    meta = store.read_json(os.path.join(d, store.TEMPLATE_META))
    if meta is None:
        raise SandboxNotFoundError("no template %s (no %s)" % (name, os.path.join(d, store.TEMPLATE_META)))
    extra = {"template": name,
             "metadata": lifetime.check_str_map("metadata", metadata) if metadata is not None else meta.get("metadata", {}),
             "envs": lifetime.check_str_map("envs", envs, env_names=True) if envs is not None else meta.get("envs", {})}
    made = yield from create_children_steps(cls, d, 1, extra, runtime_dir, max_sandboxes, boot_timeout, timeout,
                                            on_timeout, ids=[sandbox_id] if sandbox_id else None)
    return made[0]


def release_image(config, runtime_dir):
    """After a sandbox made from a fork image is deleted: the image goes once no live sandbox
    of that runtime directory (where all of one fork's children live) uses it."""
    d = (config or {}).get("image_dir")
    if not d or os.path.dirname(os.path.realpath(d)) != os.path.realpath(store.forks_root()):
        return
    with store.lock():
        if not store.sandbox_users(runtime_dir).get(os.path.realpath(d)):
            shutil.rmtree(d, ignore_errors=True)


def fork(sbx, n=1):
    """sbx.fork(n): n new running copies of sbx at this moment. sbx is paused only while its
    memory and root drive are copied, then resumes."""
    return flow.run_sync(fork_steps(sbx, n))


def fork_steps(sbx, n=1):
    """fork()'s flow."""
    sbxnet.refuse(sbx, "fork()")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise SandboxClientError("n must be an integer from 1 to 64, not %r" % (n,), status=400, sandbox_id=sbx.id)
    sbx._ensure()
    cfg = sbx._read_config()
    fr = store.ensure(store.forks_root())
    d = os.path.join(fr, "%s-%s" % (sbx.id, secrets.token_hex(4)))
    os.mkdir(d, 0o700)
    try:
        kind, pause_ms = yield from _make_image_steps(sbx, d)
        meta = {"source_id": sbx.id, "created_at": _now(), "vcpus": cfg.get("vcpus"),
                "mem_mib": cfg.get("mem_mib"), "drive_id": cfg.get("drive_id", hibernate.DRIVE_ID),
                "rootfs_copy": kind, "pause_ms": pause_ms}
        store.write_json(os.path.join(d, store.TEMPLATE_META), meta)
    except (SandboxError, OSError) as e:
        raise _image_failed(sbx, "fork", d, e) from None
    extra = {"forked_from": sbx.id, "metadata": cfg.get("metadata") or {}, "envs": cfg.get("envs") or {}}
    try:
        return (yield from create_children_steps(type(sbx), d, n, extra, runtime_dir=os.path.dirname(sbx.dir)))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)  # no child uses it
        raise
