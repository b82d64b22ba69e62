"""Sandbox: one amber microVM on this machine, launched, driven and deleted by the SDK.

The SDK is the local orchestrator: create() starts one detached `amber` process per sandbox
in its runtime directory (see runtime.py); every later call finds it there again, so another
process can get() it. Liveness is amber.pid's flock: a directory whose lock is free is stale,
is reported as gone (with exit.json's reason) and is removed.
"""
import http.client
import json
import os
import secrets
import select
import shlex
import signal
import socket
import subprocess
import threading
import time

from . import api, hibernate, lifetime, proto, runtime, store, template
from . import network as sbxnet
from .errors import (SandboxClientError, SandboxError, SandboxNotFoundError, SandboxTimeoutError,
                     SandboxUnavailableError)

AGENT_PORT = proto.DEFAULT_PORT
CREATE_TIMEOUT_S = 30.0  # multiplied by the timeout scale
# ...up to this: a guest that has not answered in 2 minutes is not booting (under TCG it is
# usually stuck; the e2e suite lost 300 s of its budget waiting for one)
CREATE_TIMEOUT_CAP_S = 120.0
DOWNLOAD_TIMEOUT_S = 120.0  # multiplied by the timeout scale
API_TIMEOUT_S = 10.0
POWEROFF_GRACE_S = 5.0
TERM_GRACE_S = 5.0
# How long a SIGKILLed amber may take to be gone: freeing a large guest's memory, or a vCPU
# thread leaving the kernel, can take seconds on a loaded host. Multiplied by the timeout scale.
KILL_WAIT_S = 30.0

# amber processes this Python process started, so that their exit status can be collected
# (and no zombie is left) when they end; keyed by pid.
_CHILDREN = {}
_CHILDREN_LOCK = threading.Lock()


def _scaled(seconds, cap=None):
    s = seconds * runtime.timeout_scale()
    return s if cap is None else min(s, cap)


def _signame(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SandboxClientError("%s must be an integer from %d to %d, not %r" % (name, lo, hi, value),
                                 status=400)


def _check_kvm():
    dev = os.environ.get("AMBER_KVM_DEVICE") or "/dev/kvm"  # tests point it elsewhere
    if not os.path.exists(dev):
        raise SandboxUnavailableError(
            "%s is missing: amber needs KVM. Load kvm_intel or kvm_amd on a CPU with "
            "hardware virtualization, or run inside the test host (scripts/testhost.sh)" % dev)
    if not os.access(dev, os.R_OK | os.W_OK):
        raise SandboxUnavailableError(
            "%s is not readable and writable by uid %d: add the user to the kvm group"
            % (dev, os.getuid()))


class Sandbox:
    """One sandbox. Make it with Sandbox.create(), find it with Sandbox.get() / Sandbox.list().

    Use it as a context manager to delete it at the end of the block.
    """

    def __init__(self, sandbox_id, runtime_dir, config=None):
        self.id = sandbox_id
        self.dir = runtime_dir
        self.config = config or {}
        self._deleted = False
        self._gone_msg = None  # why it ended, once a call found it gone

    # ----------------------------------------------------------------- finding sandboxes
    @property
    def sandbox_id(self):
        return self.id

    @property
    def api_sock(self):
        return os.path.join(self.dir, "api.sock")

    @property
    def vsock_sock(self):
        return os.path.join(self.dir, "vsock.sock")

    @property
    def console_path(self):
        return os.path.join(self.dir, "console.log")

    @property
    def pid(self):
        """The amber process id (from amber.pid), or None."""
        return runtime.read_pid(self.dir)

    def __repr__(self):
        return "Sandbox(id=%r, dir=%r)" % (self.id, self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.delete()
        except SandboxNotFoundError:
            pass
        return False

    @classmethod
    def get(cls, sandbox_id, runtime_dir=None):
        """The running (or paused) sandbox sandbox_id on this machine.

        Raises SandboxNotFoundError if there is none (a stale directory is removed on the way),
        SandboxUnavailableError if it is still starting.
        """
        if not runtime.valid_id(sandbox_id):
            raise SandboxClientError("bad sandbox id %r: ids match [A-Za-z0-9_-]{1,64}" % (sandbox_id,),
                                     status=400)
        root = runtime_dir or runtime.runtime_root()
        sbx = cls(sandbox_id, os.path.join(root, sandbox_id))
        if hibernate.is_hibernated(sandbox_id, root):
            sbx.config = hibernate.stored_config(sandbox_id)
            return sbx  # state() "Hibernated"; resume() or connect() brings it back
        state = sbx._ensure()
        if state == runtime.STARTING:
            raise SandboxUnavailableError("sandbox %s is still starting" % sandbox_id, sandbox_id)
        sbx.config = sbx._read_config()
        return sbx

    @classmethod
    def connect(cls, sandbox_id, runtime_dir=None):
        """The sandbox sandbox_id, running: a hibernated one is restored from disk and one paused
        in memory is resumed (as E2B's connect). Raises as get() and resume() do."""
        sbx = cls.get(sandbox_id, runtime_dir=runtime_dir)
        if sbx.state() in ("Paused", "Hibernated"):
            try:
                sbx.resume()
            except SandboxClientError as e:
                if e.status != 409:  # 409: someone else resumed it meanwhile
                    raise
        return sbx

    @classmethod
    def list(cls, runtime_dir=None, state=None, metadata=None):
        """Every sandbox (running, paused, or hibernated on disk) on this machine, sorted by id.
        Stale directories met on the way are removed. state ("running", "paused", or a list of
        them) keeps those in that state (one GET / each); metadata ({key: value}) keeps those
        whose metadata has every pair."""
        want = lifetime.check_list_filters(state, metadata)
        sbxs = cls._list_all(runtime_dir)
        return [s for s in sbxs if lifetime.matches(s, *want)]

    @classmethod
    def _list_all(cls, runtime_dir=None):
        root = runtime_dir or runtime.runtime_root()
        out = []
        for i in runtime.list_ids(root):
            d = os.path.join(root, i)
            state = runtime.probe(d)
            if state == runtime.ALIVE:
                sbx = cls(i, d)
                sbx.config = sbx._read_config()
                out.append(sbx)
            elif state == runtime.STALE:
                _reap_child(runtime.read_pid(d))
                runtime.remove_dir(d)
        out += hibernate.list_hibernated(cls, root)
        sbxnet.gc()  # networks of sandboxes whose amber is gone (docs/network.md)
        return sorted(out, key=lambda s: s.id)

    def _read_config(self):
        try:
            with open(os.path.join(self.dir, "config.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    # ----------------------------------------------------------------- liveness
    def _gone(self, prefix="is gone"):
        """Collect why amber ended, remove the stale directory; returns SandboxNotFoundError."""
        rec = runtime.exit_record(self.dir)
        pid = runtime.read_pid(self.dir)
        rc = _reap_child(pid)
        if rec:
            why = runtime.describe_exit(rec)
        elif rc is not None and rc < 0:
            why = "amber (pid %s) was killed by %s" % (pid, _signame(-rc))
        elif rc is not None:
            why = "amber (pid %s) exited with status %d without writing exit.json" % (pid, rc)
        else:
            why = runtime.describe_exit(None)
        runtime.remove_dir(self.dir)
        sbxnet.down(self.id)
        self._deleted = True
        self._gone_msg = "sandbox %s %s: %s" % (self.id, prefix, why)
        return SandboxNotFoundError(self._gone_msg, self.id)

    def _ensure(self):
        """Raise SandboxNotFoundError unless amber is alive (or starting); returns the state."""
        if self._deleted:
            raise SandboxNotFoundError(self._gone_msg or "sandbox %s was deleted" % self.id, self.id)
        state = runtime.probe(self.dir)
        if state == runtime.MISSING:
            if store.is_hibernated(hibernate.persistent_dir(self.id)):
                raise SandboxClientError("sandbox %s is hibernated (paused on disk): resume() it, or "
                                         "Sandbox.connect() it" % self.id, status=409, sandbox_id=self.id)
            self._deleted = True
            raise SandboxNotFoundError("sandbox %s does not exist (no %s)" % (self.id, self.dir), self.id)
        if state == runtime.STALE:
            raise self._gone()
        return state

    def _check_alive(self):
        """Called while waiting on a socket: raises once amber is gone, so no wait hangs."""
        if runtime.probe(self.dir) in (runtime.STALE, runtime.MISSING):
            raise self._gone("ended while the call was running")

    def _after_failure(self, what, err):
        """The exception for a failed socket call: not found if amber died, else unavailable."""
        state = runtime.probe(self.dir)
        # A dying amber closes its sockets a moment before its pid-file lock: look again.
        for _ in range(10):
            if state != runtime.ALIVE:
                break
            time.sleep(0.05)
            state = runtime.probe(self.dir)
        if state in (runtime.STALE, runtime.MISSING):
            if state == runtime.MISSING:
                self._deleted = True
                return SandboxNotFoundError("sandbox %s was deleted while %s" % (self.id, what), self.id)
            return self._gone()
        return SandboxUnavailableError("sandbox %s: %s failed: %s" % (self.id, what, err), self.id)

    # ----------------------------------------------------------------- API calls
    def _api(self, method, path, timeout=None, body=None):
        self._ensure()
        timeout = _scaled(API_TIMEOUT_S) if timeout is None else timeout
        try:
            r = api.request(self.api_sock, method, path, body=body, timeout=timeout)
        except socket.timeout:
            self._check_alive()
            raise SandboxTimeoutError("sandbox %s: %s %s got no answer in %.0f s"
                                      % (self.id, method, path, timeout), self.id) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._after_failure("%s %s" % (method, path), e) from None
        if 200 <= r.status < 300:
            return r.body if r.body is not None else {}
        msg = r.fault if self.id in r.fault else "sandbox %s: %s" % (self.id, r.fault)
        if r.status >= 500:
            raise SandboxUnavailableError(msg, self.id)
        raise SandboxClientError(msg, status=r.status, sandbox_id=self.id)

    def info(self):
        """amber's GET / record: {"id", "state": "Running"|"Paused"|..., "paused_at", ...};
        for a hibernated sandbox {"id", "state": "Hibernated", "paused_at", "memory": "disk"}."""
        if not self._deleted and hibernate.is_hibernated(self.id, os.path.dirname(self.dir)):
            return hibernate.info(self)
        return self._api("GET", "/")

    def state(self):
        """"Running", "Paused", "Not started" or "Stopped"."""
        return self.info().get("state")

    def is_paused(self):
        return self.state() == "Paused"

    def pause(self, keep_memory=True):
        """Freezes the sandbox: {"sandbox_id", "paused": True, "paused_at"}.
        Raises SandboxClientError (status 409, "already paused") if it is paused.
        keep_memory=False hibernates it (hibernate.py): its snapshot and root drive go to its
        persistent directory and amber ends, freeing its RAM; the record adds "memory": "disk".
        A failure (e.g. a full disk) raises SandboxClientError and leaves it paused in memory."""
        if not keep_memory:
            return hibernate.hibernate(self)
        return self._api("POST", "/pause")

    def set_timeout(self, timeout, on_timeout=None):
        """From now, the sandbox lives timeout more seconds (rounded up to whole seconds), then
        amber itself stops it (on_timeout "kill") or pauses it ("pause"); on_timeout None keeps
        the current action. amber keeps the deadline, so it holds after this process exits.
        Returns get_timeout()'s record. timeout <= 0 raises SandboxClientError."""
        body = {"timeout_s": lifetime.check_timeout(timeout, self.id)}
        if on_timeout is not None:
            body["on_timeout"] = lifetime.check_on_timeout(on_timeout, self.id)
        return self._api("PUT", "/timeout", body=body)

    def get_timeout(self):
        """{"timeout_s_left": seconds or None (no deadline), "deadline", "on_timeout"}."""
        return self._api("GET", "/timeout")

    @property
    def metadata(self):
        """The metadata given at create (a dict of str)."""
        return dict(self.config.get("metadata") or {})

    @property
    def envs(self):
        """The environment variables given at create, added to every command's."""
        return dict(self.config.get("envs") or {})

    def resume(self):
        """Resumes it: {"sandbox_id", "paused": False, "resumed_at", "paused_ms"}.
        Raises SandboxClientError (status 409) if it is not paused. A hibernated sandbox is
        restored from disk in a new amber ("memory": "disk" in the record)."""
        if not self._deleted and hibernate.is_hibernated(self.id, os.path.dirname(self.dir)):
            sbx, rec = hibernate.resume(type(self), self.id, os.path.dirname(self.dir))
            self.dir, self.config, self._proc = sbx.dir, sbx.config, getattr(sbx, "_proc", None)
            return rec or {"sandbox_id": self.id, "paused": False}
        return self._api("POST", "/resume")

    # ----------------------------------------------------------------- templates and fork
    def snapshot_template(self, name):
        """Snapshots this sandbox as template name (template.py); it is paused only meanwhile.
        Returns the template's record. Sandbox.create(template=name) starts from it."""
        return template.snapshot_template(self, name)

    def fork(self, n=1):
        """n new running sandboxes, copies of this one now (each a distinct machine)."""
        return template.fork(self, n)

    @staticmethod
    def list_templates():
        """The templates' records ({"name", "created_at", "source_id", ...}), sorted by name."""
        return template.list_templates()

    @staticmethod
    def delete_template(name, runtime_dir=None):
        """Removes a template; SandboxClientError (409) while sandboxes started from it exist."""
        return template.delete_template(name, runtime_dir)

    # ----------------------------------------------------------------- guest calls
    @property
    def commands(self):
        """Streaming and background commands (commands.py): run(), list(), connect(), kill()."""
        from .commands import Commands
        return Commands(self)

    @property
    def files(self):
        """The guest's file system, streamed (files.py): read, write, list, get_info, ..."""
        from .files import Files
        return Files(self)

    @property
    def pty(self):
        """Commands on a pseudo-terminal (pty.py): create(), connect(), resize(), kill()."""
        from .pty import Pty
        return Pty(self)

    @staticmethod
    def _scaled_s(seconds):
        return _scaled(seconds)

    def _agent(self, connect_timeout=None):
        ct = _scaled(5.0, cap=30.0) if connect_timeout is None else connect_timeout

        def connect(t):
            return proto.connect_hybrid_vsock(self.vsock_sock, AGENT_PORT, t)

        return proto.AgentClient(connect, connect_timeout=ct, check=self._check_alive)

    def _refuse_if_paused(self, what):
        st = self.state()
        if st in ("Paused", "Hibernated"):
            raise SandboxClientError("sandbox %s is %s: resume() it before %s" % (self.id, st.lower(), what),
                                     status=409, sandbox_id=self.id)
        if st != "Running":
            raise SandboxUnavailableError("sandbox %s is %s: cannot %s" % (self.id, st, what), self.id)

    def _guest_call(self, what, fn):
        try:
            return fn()
        except proto.AgentLimitError as e:
            raise SandboxClientError("sandbox %s: %s: %s" % (self.id, what, e), status=413,
                                     sandbox_id=self.id) from None
        except proto.AgentError as e:
            raise SandboxClientError("sandbox %s: %s: %s" % (self.id, what, e.message), status=400,
                                     sandbox_id=self.id) from None
        except proto.AgentTimeout:
            raise SandboxTimeoutError("sandbox %s: %s did not finish in time" % (self.id, what),
                                      self.id) from None
        except (OSError, ConnectionError, proto.ProtocolError) as e:
            raise self._after_failure(what, e) from None

    def execute(self, command, timeout=None, env=None, cwd=None, user=None, stdin=None,
                max_output_bytes=proto.MAX_OUTPUT_BYTES):
        """Runs command (a shell string, or a list of arguments) in the guest; returns an
        ExecResult (stdout, stderr, returncode/exit_code, plus the raw bytes).

        timeout (seconds): the guest kills the command's process group and SandboxTimeoutError
        is raised, with .result holding the output so far. A paused sandbox raises
        SandboxClientError (409) and stays paused. Output past max_output_bytes on either stream
        raises SandboxClientError (413) and ends the command.
        """
        self._refuse_if_paused("execute()")
        timeout_ms = None
        call_timeout = None
        if timeout is not None:
            if timeout <= 0:
                raise SandboxClientError("timeout must be positive", status=400, sandbox_id=self.id)
            timeout_ms = max(1, int(timeout * 1000))
            call_timeout = timeout + _scaled(10.0)
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        if self.config.get("envs"):
            env = dict(self.config["envs"], **(env or {}))
        try:
            res = self._guest_call("execute", lambda: self._agent().exec(
                command, env=env, cwd=cwd, timeout_ms=timeout_ms, user=user, stdin=data,
                timeout=call_timeout, max_output_bytes=max_output_bytes))
        except ValueError as e:
            raise SandboxClientError("sandbox %s: execute: %s" % (self.id, e), status=400,
                                     sandbox_id=self.id) from None
        if res.timed_out:
            raise SandboxTimeoutError("sandbox %s: command timed out after %g s" % (self.id, timeout),
                                      self.id, result=res)
        return res

    def upload(self, path, data, mode=0o644):
        """Writes data (bytes, or str as UTF-8) to the guest file path; returns its size."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._refuse_if_paused("upload()")
        return self._guest_call("upload %s" % path,
                                lambda: self._agent().write_file(path, bytes(data), mode))["size"]

    def download(self, path, timeout=None, max_bytes=proto.MAX_FILE_BYTES):
        """The bytes of the guest file path (returned, never written to the host: the mode the
        guest reports is ignored). timeout (seconds, default 120 times the timeout scale) bounds
        the whole transfer: SandboxTimeoutError past it. More than max_bytes raises
        SandboxClientError (413)."""
        self._refuse_if_paused("download()")
        t = _scaled(DOWNLOAD_TIMEOUT_S) if timeout is None else timeout
        return self._guest_call("download %s" % path,
                                lambda: self._agent().read_file(path, timeout=t, max_bytes=max_bytes))

    def ping(self):
        """The agent's ping record {"proto_version", "agent_version", "uptime_ms"}."""
        self._refuse_if_paused("ping()")
        return self._guest_call("ping", lambda: self._agent().ping(timeout=_scaled(5.0)))

    def console(self, lines=40):
        """The last lines of the guest console."""
        return runtime.tail_file(self.console_path, lines)

    # ----------------------------------------------------------------- delete
    def delete(self, timeout=None):
        """Graceful stop: agent power-off with a deadline, then SIGTERM, then SIGKILL. Removes
        the runtime directory (and the persistent one, if any); afterwards every call raises
        SandboxNotFoundError. A hibernated sandbox's files are removed."""
        if not self._deleted and hibernate.is_hibernated(self.id, os.path.dirname(self.dir)):
            hibernate.delete(self.id)
            self._deleted = True
            return
        state = self._ensure()
        grace = _scaled(POWEROFF_GRACE_S, cap=60.0) if timeout is None else timeout
        pid = runtime.read_pid(self.dir)
        pidfd = None
        gone = True
        if pid:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pidfd = None
        try:
            # The lock was checked before pidfd_open: make sure the pid is still amber's.
            if runtime.probe(self.dir) == runtime.STALE:
                raise self._gone()
            if state == runtime.ALIVE and pidfd is not None:
                self._poweroff(grace)
                if not _wait_pidfd(pidfd, grace):
                    _signal(pidfd, pid, signal.SIGTERM)
                    if not _wait_pidfd(pidfd, _scaled(TERM_GRACE_S, cap=30.0)):
                        _signal(pidfd, pid, signal.SIGKILL)
                        gone = _wait_pidfd(pidfd, _scaled(KILL_WAIT_S))
            elif pid:
                _signal(pidfd, pid, signal.SIGKILL)
                if pidfd is not None:
                    gone = _wait_pidfd(pidfd, _scaled(KILL_WAIT_S))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if not gone:
            raise _still_running(self.id, pid, "nothing was removed: delete() again once it is gone")
        _reap_child(pid)
        runtime.remove_dir(self.dir)
        sbxnet.down(self.id)
        if self.config.get("state_dir"):
            runtime.remove_dir(self.config["state_dir"])
        template.release_image(self.config, os.path.dirname(self.dir))
        self._deleted = True

    def _poweroff(self, grace):
        """Ask the guest to power off; a paused guest is resumed first so that it can."""
        try:
            if self.state() == "Paused":
                self.resume()
            self._agent(connect_timeout=min(grace, 5.0)).shutdown(timeout=grace)
        except (SandboxError, OSError, ConnectionError, proto.ProtocolError, proto.AgentError,
                proto.AgentTimeout):
            pass  # SIGTERM follows

    # ----------------------------------------------------------------- create
    @classmethod
    def create(cls, vcpus=1, mem_mib=256, kernel=None, rootfs=None, timeout=None, max_sandboxes=None,
               runtime_dir=None, sandbox_id=None, initrd=None, on_timeout="kill", boot_timeout=None,
               metadata=None, envs=None, template=None, network=False, allow_out=None, deny_out=None):
        """Boots a new sandbox and returns once its agent answers ping.

        network=True gives the guest eth0 on a TAP in a network namespace of its own, with NAT to
        the host's uplink and DNS (needs root, ip and nft; docs/network.md). allow_out and
        deny_out are lists of "A.B.C.D[/N][:PORT[-PORT]]": deny_out's are blocked unless
        allow_out lists them (E2B's rule). A malformed rule raises SandboxClientError (400)
        before anything is made.

        template: start from that template (snapshot_template) by restore instead of booting;
        vcpus, mem_mib, kernel, rootfs and initrd are then the template's.

        timeout (seconds, as E2B's): the sandbox's lifetime; amber stops it (on_timeout "kill")
        or pauses it ("pause") then, even if this process has exited. None: no deadline (unlike
        E2B's 300 s default). set_timeout() moves it. boot_timeout bounds the wait for the
        agent; it defaults to 30 s times the timeout scale (see runtime.timeout_scale).
        metadata ({str: str}) is kept with the sandbox for Sandbox.list(metadata=...); envs
        ({str: str}) are added to the environment of every command. With max_sandboxes,
        refuses (SandboxClientError, status 429) when that many sandboxes are already running or
        paused in the runtime directory, across processes.
        """
        net = sbxnet.check(network, allow_out, deny_out)
        if template is not None and net is not None:
            raise SandboxClientError("network=True cannot start from a template (docs/network.md)", status=400)
        if template is not None:
            from . import template as tmpl
            return tmpl.create_from_template(cls, template, runtime_dir, max_sandboxes, boot_timeout, timeout,
                                             on_timeout, metadata, envs, sandbox_id)
        sbx, plan = cls._create_begin(vcpus, mem_mib, kernel, rootfs, timeout, max_sandboxes, runtime_dir,
                                      sandbox_id, initrd, on_timeout, boot_timeout, metadata, envs, net=net)
        try:
            sbx._wait_ready(plan["deadline"], plan["boot_timeout"])
            if plan.get("network"):
                sbxnet.configure_guest(sbx, plan["network"])
            if plan["lifetime_s"] is not None:
                sbx.set_timeout(plan["lifetime_s"], plan["on_timeout"])
        except BaseException:
            sbx._create_fail(plan)
            raise
        sbx._create_end(plan)
        return sbx

    @classmethod
    def _create_begin(cls, vcpus, mem_mib, kernel, rootfs, timeout, max_sandboxes, runtime_dir, sandbox_id,
                      initrd, on_timeout, boot_timeout, metadata, envs, net=None):
        """create() up to amber's start (shared with AsyncSandbox): returns (sbx, plan) for
        _wait_ready(plan["deadline"], plan["boot_timeout"]), then _create_end or _create_fail.
        net: network.check()'s rules, or None; plan["network"] is then `amberctl net up`'s record."""
        lifetime_s = None if timeout is None else lifetime.check_timeout(timeout)
        on_timeout = lifetime.check_on_timeout(on_timeout)
        metadata = lifetime.check_str_map("metadata", metadata)
        envs = lifetime.check_str_map("envs", envs, env_names=True)
        timeout = boot_timeout
        _check_int("vcpus", vcpus, 1, 32)
        _check_int("mem_mib", mem_mib, 32, 1 << 20)
        if max_sandboxes is not None:
            _check_int("max_sandboxes", max_sandboxes, 1, 1 << 16)
        if sandbox_id is None:
            sandbox_id = "sbx-" + secrets.token_hex(4)
        if not runtime.valid_id(sandbox_id):
            raise SandboxClientError("bad sandbox id %r: ids match [A-Za-z0-9_-]{1,64}" % (sandbox_id,),
                                     status=400)
        timeout = _scaled(CREATE_TIMEOUT_S, cap=CREATE_TIMEOUT_CAP_S) if timeout is None else float(timeout)
        paths = runtime.default_paths()
        kernel = kernel or paths["kernel"]
        rootfs = rootfs or paths["rootfs"]
        initrd = initrd or paths["initrd"]
        amber = paths["amber"]
        if not os.access(amber, os.X_OK):
            raise SandboxUnavailableError("%s is missing: build it with `make`" % amber)
        for what, p in (("kernel", kernel), ("initrd", initrd), ("rootfs", rootfs)):
            if not os.path.isfile(p):
                raise SandboxUnavailableError("%s %s is missing: build the guest with `make guest`" % (what, p))
        _check_kvm()

        root = runtime.ensure_root(runtime_dir or runtime.runtime_root())
        d = os.path.join(root, sandbox_id)
        starting = runtime.FileLock(os.path.join(d, "starting.lock"))
        with runtime.FileLock(os.path.join(root, ".lock")):
            if max_sandboxes is not None:
                live = [i for i in runtime.list_ids(root)
                        if runtime.probe(os.path.join(root, i)) in (runtime.ALIVE, runtime.STARTING)]
                if len(live) >= max_sandboxes:
                    raise SandboxClientError(
                        "sandbox limit reached: %d of max_sandboxes=%d already running or paused in %s (%s)"
                        % (len(live), max_sandboxes, root, ", ".join(live)), status=429)
            existing = runtime.probe(d)
            if existing == runtime.STALE:
                _reap_child(runtime.read_pid(d))
                runtime.remove_dir(d)
            elif existing != runtime.MISSING:
                raise SandboxClientError("sandbox %s already exists" % sandbox_id, status=409,
                                         sandbox_id=sandbox_id)
            os.mkdir(d, 0o700)
            starting.__enter__()
        sbx = cls(sandbox_id, d)
        plan = {"starting": starting, "deadline": time.monotonic() + timeout, "boot_timeout": timeout,
                "lifetime_s": lifetime_s, "on_timeout": on_timeout}
        try:
            extra = {"metadata": metadata, "envs": envs}
            if net is not None:
                plan["network"] = extra["network"] = sbxnet.up(sandbox_id, d, net)
            sbx._launch(amber, kernel, initrd, rootfs, vcpus, mem_mib, extra)
        except BaseException:
            sbx._create_fail(plan)
            raise
        return sbx, plan

    def _create_fail(self, plan):
        self._abort_start()
        try:
            if plan.get("network"):
                sbxnet.down(self.id)
        finally:
            plan["starting"].release()
            runtime.remove_dir(self.dir)

    def _create_end(self, plan):
        plan["starting"].release()
        try:
            os.unlink(os.path.join(self.dir, "starting.lock"))
        except OSError:
            pass

    def _launch(self, amber, kernel, initrd, base_rootfs, vcpus, mem_mib, extra=None):
        d = self.dir
        rootfs = runtime.sparse_copy(base_rootfs, os.path.join(d, "rootfs.ext4"))
        argv = [amber, "--id", self.id, "--api-sock", self.api_sock, "--kernel", kernel,
                "--initrd", initrd, "--drive", "path=%s,root" % rootfs,
                "--vsock", "cid=3,uds=%s" % self.vsock_sock, "--vcpus", str(vcpus),
                "--mem-mib", str(mem_mib), "--console", self.console_path,
                "--pid-file", os.path.join(d, "amber.pid"), "--exit-file", os.path.join(d, "exit.json")]
        net = (extra or {}).get("network")
        if net:
            argv += ["--net", net["amber_net_arg"]]
        argv += shlex.split(os.environ.get("AMBER_EXTRA_ARGS", ""))  # operator/test extras
        self.config = {
            "id": self.id, "vcpus": vcpus, "mem_mib": mem_mib, "kernel": kernel, "initrd": initrd,
            "base_rootfs": base_rootfs, "rootfs": rootfs, "api_sock": self.api_sock,
            "vsock_uds": self.vsock_sock, "guest_cid": 3, "agent_port": AGENT_PORT,
            "console": self.console_path, "argv": argv, "created_by": "amber-sdk-python",
            "creator_pid": os.getpid(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.config.update(extra or {})
        tmp = os.path.join(d, ".config.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.config, f, indent=2)
            f.write("\n")
        os.replace(tmp, os.path.join(d, "config.json"))

        self._spawn(sbxnet.exec_prefix(self.id) + argv if net else argv)

    def _spawn(self, argv):
        """Starts amber (argv[0]) detached in this sandbox's directory: its own session, output to
        amber.stdout and amber.stderr, reaped by this module. Raises SandboxUnavailableError."""
        d = self.dir
        out = open(os.path.join(d, "amber.stdout"), "wb")
        err = open(os.path.join(d, "amber.stderr"), "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=d,
                                    start_new_session=True, close_fds=True)
        except OSError as e:
            raise SandboxUnavailableError("cannot start %s: %s" % (argv[0], e), self.id) from None
        finally:
            out.close()
            err.close()
        with _CHILDREN_LOCK:
            _CHILDREN[proc.pid] = proc
        self._proc = proc

    def _boot_failure(self, deadline, timeout, last_err):
        """None while the boot may go on; else the exception that ends it (amber exited, or the
        deadline passed)."""
        rc = self._proc.poll()
        if rc is not None:
            return SandboxUnavailableError(self._early_exit_message(rc), self.id)
        if deadline - time.monotonic() <= 0:
            return SandboxTimeoutError(
                "sandbox %s: the guest agent did not answer within %.0f s (last error: %s)\n"
                "--- console (last lines) ---\n%s" % (self.id, timeout, last_err, self.console(15)),
                self.id)
        return None

    def _wait_ready(self, deadline, timeout):
        """Returns once the agent answers ping; raises if amber exits or deadline passes."""
        client = self._agent(connect_timeout=_scaled(2.0, cap=20.0))
        client.check = None  # during boot, proc.poll() is the liveness check
        last_err = None
        while True:
            failure = self._boot_failure(deadline, timeout, last_err)
            if failure is not None:
                raise failure
            if os.path.exists(self.vsock_sock):
                try:
                    client.ping(timeout=min(deadline - time.monotonic(), _scaled(3.0, cap=30.0)))
                    return
                except (OSError, ConnectionError, proto.ProtocolError, proto.AgentTimeout,
                        proto.AgentError) as e:
                    last_err = e
            time.sleep(0.2)

    def _early_exit_message(self, rc):
        rec = runtime.exit_record(self.dir)
        how = "was killed by %s" % _signame(-rc) if rc < 0 else "exited with status %d" % rc
        msg = "amber %s while starting sandbox %s" % (how, self.id)
        if rec:
            msg += ": %s" % runtime.describe_exit(rec)
        tail = runtime.tail_file(os.path.join(self.dir, "amber.stderr"), 15)
        if tail:
            msg += "\n--- amber stderr (last lines) ---\n" + tail
        else:
            con = self.console(10)
            if con:
                msg += "\n--- console (last lines) ---\n" + con
        return msg

    def _abort_start(self):
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with _CHILDREN_LOCK:
            _CHILDREN.pop(proc.pid, None)


def _reap_child(pid):
    """If pid is an amber this process started and it has ended, reap it; returns its status
    (negative: killed by that signal) or None (not ours, or still running)."""
    if not pid:
        return None
    with _CHILDREN_LOCK:
        proc = _CHILDREN.get(pid)
    if proc is None:
        return None
    try:
        rc = proc.wait(2)
    except subprocess.TimeoutExpired:
        return None
    with _CHILDREN_LOCK:
        _CHILDREN.pop(pid, None)
    return rc


def _wait_pidfd(pidfd, timeout):
    """True once the process behind pidfd has exited (within timeout seconds)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(max(0, int(timeout * 1000))))


def _still_running(sandbox_id, pid, then):
    """The error for an amber that outlived its SIGKILL by KILL_WAIT_S; then says what the
    caller may do once it is gone (its runtime directory is left in place)."""
    return SandboxError("sandbox %s: amber (pid %d) has not exited %.0f s after SIGKILL; %s"
                        % (sandbox_id, pid, _scaled(KILL_WAIT_S), then), sandbox_id=sandbox_id)


def _signal(pidfd, pid, sig):
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, OSError):
        pass
