"""AsyncSandbox: the SDK's surface for asyncio, on the caller's event loop with no thread per
call: every API and agent exchange is an asyncio stream on the Unix socket. Local bookkeeping
(the runtime directory, liveness by flock, starting amber) reuses the synchronous Sandbox, whose
steps there are short file-system calls. Hibernate, resume from disk, templates and fork run
the flows the blocking SDK runs (flow.py) on this loop; their drive copies and fsynced writes
go to the loop's default executor, the only work that leaves the loop.

    async with await AsyncSandbox.create(timeout=300) as sbx:
        r = await sbx.commands.run("echo hi", on_stdout=print)
        h = await sbx.commands.run("sleep 100", background=True)
        await h.kill()
        await sbx.files.write("/tmp/x", b"data")
        await sbx.pause(keep_memory=False)  # hibernate; await sbx.resume() or AsyncSandbox.connect(id)
        kids = await sbx.fork(2)
"""
import asyncio
import errno as errno_
import json
import os
import signal as signal_
import time

from . import api, flow, hibernate, lifetime, proto, runtime
from . import network as sbxnet
from . import template as templates  # create() has a parameter named template
from .errors import (CommandNotFoundError, SandboxClientError, SandboxError, SandboxFileNotFoundError,
                     SandboxFileTypeError, SandboxTimeoutError, SandboxUnavailableError)
from .sandbox import Sandbox, _reap_child, _scaled
# AsyncCommandHandle, _raise_async and _result are imported from here by __init__, aio_files, aio_pty.
from .aio_commands import AsyncCommandHandle, AsyncCommands, _raise_async, _result  # noqa: F401

HTTP_MAX_BODY = 1024 * 1024
SLICE_S = 0.5


class _AConn:
    """One agent connection: frames over an asyncio stream, with a deadline and liveness checks."""

    def __init__(self, reader, writer, leftover, deadline, check):
        self.reader, self.writer, self.deadline, self.check = reader, writer, deadline, check
        self.frames = proto.FrameReader()
        self.frames.feed(leftover)

    async def send(self, ftype, payload=b""):
        self.writer.write(proto.encode_frame(ftype, 1, payload))
        await self.writer.drain()

    async def recv(self):
        while True:
            f = self.frames.next()
            if f is not None:
                return f[0], f[2]
            slice_s = SLICE_S
            if self.deadline is not None:
                slice_s = min(slice_s, self.deadline - time.monotonic())
                if slice_s <= 0:
                    raise proto.AgentTimeout("the agent did not answer in time")
            try:
                data = await asyncio.wait_for(self.reader.read(proto.DATA_CHUNK + proto.HDR_LEN), slice_s)
            except asyncio.TimeoutError:
                if self.check is not None:
                    self.check()
                continue
            if not data:
                raise proto.ProtocolError("the agent closed the connection")
            self.frames.feed(data)

    def close(self):
        self.writer.close()


async def http_request(sock, method, path, body=None, timeout=10.0):
    """One request on a fresh connection to amber's API socket: api.ApiResponse. Raises OSError
    and asyncio.TimeoutError as they come."""
    data = b"" if body is None else json.dumps(body).encode()
    req = ("%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n"
           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (method, path, len(data))).encode()
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(sock), timeout)
    try:
        writer.write(req + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(HTTP_MAX_BODY + 8192), timeout)
        while raw and len(raw) <= HTTP_MAX_BODY + 8192:
            more = await asyncio.wait_for(reader.read(65536), timeout)
            if not more:
                break
            raw += more
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, text = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ConnectionError("%s %s: not an HTTP answer" % (method, path)) from None
    return api.ApiResponse(status, text.decode("utf-8", "replace"))


async def api_call(s, method, path, body=None, timeout=None):
    """A call on the (blocking) Sandbox s's API, with Sandbox._api's error mapping; its JSON body."""
    s._ensure()
    timeout = _scaled(10.0) if timeout is None else timeout
    try:
        r = await http_request(s.api_sock, method, path, body, timeout)
    except asyncio.TimeoutError:
        s._check_alive()
        raise SandboxTimeoutError("sandbox %s: %s %s got no answer in %.0f s" % (s.id, method, path, timeout),
                                  s.id) from None
    except OSError as e:
        raise s._after_failure("%s %s" % (method, path), e) from None
    if 200 <= r.status < 300:
        return r.body if isinstance(r.body, dict) else {}
    msg = "sandbox %s: %s" % (s.id, r.fault)
    if r.status >= 500:
        raise SandboxUnavailableError(msg, s.id)
    raise SandboxClientError(msg, status=r.status, sandbox_id=s.id)


class AsyncSandbox:
    """The async twin of Sandbox: create(), connect(), list(); commands, files; pause(),
    resume(), state(), set_timeout(), get_timeout(), delete(); hibernate (pause(keep_memory=
    False)), templates and fork. Errors are the same classes."""

    def __init__(self, sync):
        from .aio_files import AsyncFiles
        self._s = sync
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)

    @property
    def pty(self):
        """Commands on a pseudo-terminal (aio_pty.py)."""
        from .aio_pty import AsyncPty
        return AsyncPty(self)

    @property
    def id(self):
        return self._s.id

    sandbox_id = id

    @property
    def metadata(self):
        return self._s.metadata

    def __repr__(self):
        return "AsyncSandbox(id=%r)" % self.id

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        try:
            await self.delete()
        except SandboxError:
            pass
        return False

    # ---------------------------------------------------------------- finding and making
    @classmethod
    async def create(cls, vcpus=1, mem_mib=256, kernel=None, rootfs=None, timeout=None, max_sandboxes=None,
                     runtime_dir=None, sandbox_id=None, initrd=None, on_timeout="kill", boot_timeout=None,
                     metadata=None, envs=None, template=None, network=False, allow_out=None, deny_out=None):
        """As Sandbox.create, awaiting the boot (or, with template=, the restore) instead of blocking."""
        net = sbxnet.check(network, allow_out, deny_out)
        if template is not None and net is not None:
            raise SandboxClientError("network=True cannot start from a template (docs/network.md)", status=400)
        if template is not None:
            return cls(await flow.run_async(templates.create_from_template_steps(
                Sandbox, template, runtime_dir, max_sandboxes, boot_timeout, timeout, on_timeout, metadata,
                envs, sandbox_id)))
        sbx, plan = Sandbox._create_begin(vcpus, mem_mib, kernel, rootfs, timeout, max_sandboxes, runtime_dir,
                                          sandbox_id, initrd, on_timeout, boot_timeout, metadata, envs, net=net)
        a = cls(sbx)
        try:
            await a._wait_ready(plan["deadline"], plan["boot_timeout"])
            if plan.get("network"):
                try:
                    await a.commands.run(plan["network"]["guest_script"],
                                         timeout=sbxnet.GUEST_SETUP_TIMEOUT_S * runtime.timeout_scale())
                except SandboxError as e:
                    raise sbxnet.guest_failed(sbx, e) from None
            if plan["lifetime_s"] is not None:
                await a.set_timeout(plan["lifetime_s"], plan["on_timeout"])
        except BaseException:
            sbx._create_fail(plan)
            raise
        sbx._create_end(plan)
        return a

    async def _wait_ready(self, deadline, timeout):
        """Returns once the agent answers ping; raises if amber exits or deadline passes."""
        s, last = self._s, None
        while True:
            failure = s._boot_failure(deadline, timeout, last)
            if failure is not None:
                raise failure
            try:
                await self._ping(min(deadline - time.monotonic(), _scaled(3.0, cap=30.0)), check=False)
                return
            except (OSError, proto.ProtocolError, proto.AgentTimeout, proto.AgentError,
                    asyncio.TimeoutError) as e:
                last = e
            await asyncio.sleep(0.2)

    @classmethod
    async def connect(cls, sandbox_id, runtime_dir=None):
        """The sandbox sandbox_id, running: a hibernated one is restored from disk and one paused
        in memory is resumed (Sandbox.connect)."""
        a = cls(Sandbox.get(sandbox_id, runtime_dir=runtime_dir))
        if await a.state() in ("Paused", "Hibernated"):
            try:
                await a.resume()
            except SandboxClientError as e:
                if e.status != 409:  # 409: someone else resumed it meanwhile
                    raise
        return a

    @classmethod
    async def list(cls, runtime_dir=None, state=None, metadata=None):
        """As Sandbox.list; the state filter asks each sandbox over its API asynchronously."""
        states, md = lifetime.check_list_filters(state, metadata)
        out = [cls(s) for s in Sandbox._list_all(runtime_dir) if lifetime.matches(s, None, md)]
        if states is None:
            return out
        got = await asyncio.gather(*(a._state_or_none() for a in out))
        return [a for a, st in zip(out, got) if st in states]

    # ---------------------------------------------------------------- the API
    async def _api(self, method, path, body=None, timeout=None):
        return await api_call(self._s, method, path, body, timeout)

    def _hibernated(self):
        s = self._s
        return not s._deleted and hibernate.is_hibernated(s.id, os.path.dirname(s.dir))

    async def info(self):
        """GET /'s record ({"id", "state": "Hibernated", ...} for a hibernated sandbox)."""
        if self._hibernated():
            return hibernate.info(self._s)
        return await self._api("GET", "/")

    async def state(self):
        return (await self.info()).get("state")

    async def _state_or_none(self):
        try:
            return await self.state()
        except SandboxError:
            return None

    async def pause(self, keep_memory=True):
        """As Sandbox.pause: keep_memory=False hibernates it to disk and ends its amber."""
        if not keep_memory:
            return await flow.run_async(hibernate.hibernate_steps(self._s))
        return await self._api("POST", "/pause")

    async def resume(self):
        """As Sandbox.resume: a hibernated sandbox is restored from disk in a new amber."""
        if self._hibernated():
            s = self._s
            new, rec = await flow.run_async(hibernate.resume_steps(Sandbox, s.id, os.path.dirname(s.dir)))
            s.dir, s.config, s._proc = new.dir, new.config, getattr(new, "_proc", None)
            return rec or {"sandbox_id": s.id, "paused": False}
        return await self._api("POST", "/resume")

    # ---------------------------------------------------------------- templates and fork
    async def snapshot_template(self, name):
        """As Sandbox.snapshot_template: this sandbox (paused only meanwhile) as template name."""
        return await flow.run_async(templates.snapshot_template_steps(self._s, name))

    async def fork(self, n=1):
        """n new running AsyncSandboxes, copies of this one now (each a distinct machine)."""
        return [type(self)(k) for k in await flow.run_async(templates.fork_steps(self._s, n))]

    @staticmethod
    def list_templates():
        """The templates' records, sorted by name (a directory listing: not a coroutine)."""
        return templates.list_templates()

    @staticmethod
    def delete_template(name, runtime_dir=None):
        """As Sandbox.delete_template (local files under the store's lock: not a coroutine)."""
        return templates.delete_template(name, runtime_dir)

    async def set_timeout(self, timeout, on_timeout=None):
        body = {"timeout_s": lifetime.check_timeout(timeout, self.id)}
        if on_timeout is not None:
            body["on_timeout"] = lifetime.check_on_timeout(on_timeout, self.id)
        return await self._api("PUT", "/timeout", body=body)

    async def get_timeout(self):
        return await self._api("GET", "/timeout")

    async def delete(self):
        """Asks the guest to power off, then (as Sandbox.delete) SIGTERM and SIGKILL; the waits
        are awaited, not slept. A hibernated sandbox's files are removed."""
        s = self._s
        if self._hibernated():
            hibernate.delete(s.id)
            s._deleted = True
            return
        try:
            if await self.state() == "Paused":
                await self.resume()
            c = await self._open(_scaled(5.0, cap=30.0))
            try:
                await c.send(proto.SHUTDOWN, proto.tlv(proto.TAG_ACTION, proto.POWEROFF))
                await c.recv()
            finally:
                c.close()
        except (SandboxError, OSError, proto.ProtocolError, proto.AgentError, proto.AgentTimeout):
            pass  # SIGTERM follows
        pid = runtime.read_pid(s.dir)
        for sig, grace in ((None, _scaled(5.0, cap=60.0)), (signal_.SIGTERM, _scaled(5.0, cap=30.0)),
                           (signal_.SIGKILL, 10.0)):
            if sig is not None and pid:
                try:
                    os.kill(pid, sig)  # amber.pid's flock is still held: the pid is amber's
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and runtime.probe(s.dir) == runtime.ALIVE:
                await asyncio.sleep(0.1)
            if runtime.probe(s.dir) != runtime.ALIVE:
                break
        _reap_child(pid)
        runtime.remove_dir(s.dir)
        sbxnet.down(s.id)
        if s.config.get("state_dir"):
            runtime.remove_dir(s.config["state_dir"])
        templates.release_image(s.config, os.path.dirname(s.dir))
        s._deleted = True

    # ---------------------------------------------------------------- the agent
    async def _open(self, timeout, check=True):
        s = self._s
        ct = _scaled(5.0, cap=30.0) if timeout is None else min(timeout, _scaled(5.0, cap=30.0))
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(s.vsock_sock, limit=1 << 16), ct)
        try:
            writer.write(b"CONNECT %d\n" % proto.DEFAULT_PORT)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), ct)
            if not line.startswith(b"OK "):
                raise ConnectionError("vsock port %d: handshake refused: %r" % (proto.DEFAULT_PORT, line[:64]))
        except BaseException:
            writer.close()
            raise
        deadline = None if timeout is None else time.monotonic() + timeout
        return _AConn(reader, writer, b"", deadline, s._check_alive if check else None)

    async def _ping(self, timeout, check=True):
        c = await self._open(timeout, check)
        try:
            await c.send(proto.PING)
            return await _result(c)
        finally:
            c.close()

    async def _guest(self, what, coro, pid=None, path=None):
        """Awaits coro with the sync SDK's error mapping (and ESRCH/ENOENT/EISDIR... as there)."""
        s = self._s
        try:
            return await coro
        except proto.AgentError as e:
            if pid is not None and e.errno == errno_.ESRCH:
                raise CommandNotFoundError("sandbox %s: no background command with pid %s" % (s.id, pid),
                                           s.id, pid=pid) from None
            if path is not None and e.errno == errno_.ENOENT:
                raise SandboxFileNotFoundError("sandbox %s: %s %s: no such file or directory in the guest"
                                               % (s.id, what, path), s.id, path) from None
            if path is not None and e.errno in (errno_.EISDIR, errno_.ENOTDIR, errno_.EEXIST):
                raise SandboxFileTypeError("sandbox %s: %s %s: %s" % (s.id, what, path, e.message),
                                           s.id, path) from None
            raise SandboxClientError("sandbox %s: %s: %s" % (s.id, what, e.message), status=400,
                                     sandbox_id=s.id) from None
        except (proto.AgentTimeout, asyncio.TimeoutError):
            raise SandboxTimeoutError("sandbox %s: %s did not finish in time" % (s.id, what), s.id) from None
        except (OSError, ConnectionError, proto.ProtocolError) as e:
            raise s._after_failure(what, e) from None

    async def _refuse_if_paused(self, what):
        st = await self.state()
        if st == "Hibernated":
            raise SandboxClientError("sandbox %s is hibernated (paused on disk): resume() it before %s"
                                     % (self.id, what), status=409, sandbox_id=self.id)
        if st == "Paused":
            raise SandboxClientError("sandbox %s is paused: resume() it before %s" % (self.id, what),
                                     status=409, sandbox_id=self.id)
        if st != "Running":
            raise SandboxUnavailableError("sandbox %s is %s: cannot %s" % (self.id, st, what), self.id)
