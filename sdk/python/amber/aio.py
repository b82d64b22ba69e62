"""AsyncSandbox: the SDK's surface for asyncio, on the caller's event loop with no thread per
call: every API and agent exchange is an asyncio stream on the Unix socket. Local bookkeeping
(the runtime directory, liveness by flock, starting amber) reuses the synchronous Sandbox, whose
steps there are short file-system calls.

    async with await AsyncSandbox.create(timeout=300) as sbx:
        r = await sbx.commands.run("echo hi", on_stdout=print)
        h = await sbx.commands.run("sleep 100", background=True)
        await h.kill()
        await sbx.files.write("/tmp/x", b"data")
"""
import asyncio
import errno as errno_
import json
import os
import signal as signal_
import time

from . import commands as cmds
from . import lifetime, proto, runtime
from . import network as sbxnet
from .errors import (CommandNotFoundError, SandboxClientError, SandboxError, SandboxFileNotFoundError,
                     SandboxFileTypeError, SandboxTimeoutError, SandboxUnavailableError, StdinClosedError)
from .sandbox import Sandbox, _reap_child, _scaled

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


class AsyncSandbox:
    """The async twin of Sandbox: create(), connect(), list(); commands, files; pause(),
    resume(), state(), set_timeout(), get_timeout(), delete(). Errors are the same classes."""

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
                     metadata=None, envs=None, network=False, allow_out=None, deny_out=None):
        """As Sandbox.create, awaiting the boot instead of blocking."""
        net = sbxnet.check(network, allow_out, deny_out)
        sbx, plan = Sandbox._create_begin(vcpus, mem_mib, kernel, rootfs, timeout, max_sandboxes, runtime_dir,
                                          sandbox_id, initrd, on_timeout, boot_timeout, metadata, envs, net=net)
        a = cls(sbx)
        try:
            last = None
            while True:
                failure = sbx._boot_failure(plan["deadline"], plan["boot_timeout"], last)
                if failure is not None:
                    raise failure
                try:
                    await a._ping(min(plan["deadline"] - time.monotonic(), _scaled(3.0, cap=30.0)), check=False)
                    break
                except (OSError, proto.ProtocolError, proto.AgentTimeout, proto.AgentError,
                        asyncio.TimeoutError) as e:
                    last = e
                await asyncio.sleep(0.2)
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

    @classmethod
    async def connect(cls, sandbox_id, runtime_dir=None):
        """The running sandbox sandbox_id (Sandbox.get)."""
        return cls(Sandbox.get(sandbox_id, runtime_dir=runtime_dir))

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
        s = self._s
        s._ensure()
        timeout = _scaled(10.0) if timeout is None else timeout
        data = b"" if body is None else json.dumps(body).encode()
        req = ("%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (method, path, len(data))).encode()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(s.api_sock), timeout)
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
        except asyncio.TimeoutError:
            s._check_alive()
            raise SandboxTimeoutError("sandbox %s: %s %s got no answer in %.0f s" % (s.id, method, path, timeout),
                                      s.id) from None
        except OSError as e:
            raise s._after_failure("%s %s" % (method, path), e) from None
        head, _, text = raw.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise SandboxUnavailableError("sandbox %s: %s %s: not an HTTP answer" % (s.id, method, path), s.id) from None
        try:
            obj = json.loads(text) if text.strip() else {}
        except ValueError:
            obj = {}
        if 200 <= status < 300:
            return obj
        fault = obj.get("fault_message") if isinstance(obj, dict) else None
        msg = "sandbox %s: %s" % (s.id, fault or "HTTP %d" % status)
        if status >= 500:
            raise SandboxUnavailableError(msg, s.id)
        raise SandboxClientError(msg, status=status, sandbox_id=s.id)

    async def info(self):
        return await self._api("GET", "/")

    async def state(self):
        return (await self.info()).get("state")

    async def _state_or_none(self):
        try:
            return await self.state()
        except SandboxError:
            return None

    async def pause(self):
        return await self._api("POST", "/pause")

    async def resume(self):
        return await self._api("POST", "/resume")

    async def set_timeout(self, timeout, on_timeout=None):
        body = {"timeout_s": lifetime.check_timeout(timeout, self.id)}
        if on_timeout is not None:
            body["on_timeout"] = lifetime.check_on_timeout(on_timeout, self.id)
        return await self._api("PUT", "/timeout", body=body)

    async def get_timeout(self):
        return await self._api("GET", "/timeout")

    async def delete(self):
        """Asks the guest to power off, then (as Sandbox.delete) SIGTERM and SIGKILL; the waits
        are awaited, not slept."""
        s = self._s
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
        if st == "Paused":
            raise SandboxClientError("sandbox %s is paused: resume() it before %s" % (self.id, what),
                                     status=409, sandbox_id=self.id)
        if st != "Running":
            raise SandboxUnavailableError("sandbox %s is %s: cannot %s" % (self.id, st, what), self.id)


async def _result(c):
    ftype, data = await c.recv()
    if ftype == proto.ERROR:
        proto._raise_error(data)
    if ftype != proto.RESULT:
        raise proto.ProtocolError("expected RESULT, got frame type 0x%02x" % ftype)
    return proto.Tlvs(data)


class AsyncCommandHandle:
    """A background command for asyncio: pid, wait(), kill(), send_stdin(), close_stdin(),
    disconnect(), and `async for out, err in handle`. Output is read only while you iterate or
    wait(), under the same bounds as CommandHandle (the guest keeps the last 1 MiB meanwhile,
    and detaches a client that stops reading for 10 s)."""

    def __init__(self, asbx, conn, pid, on_stdout=None, on_stderr=None, dropped=0):
        self._a, self._conn, self.pid = asbx, conn, pid
        self._out = cmds._Output(on_stdout, on_stderr, dropped=dropped)
        self._stdin_closed = False

    async def _next(self):
        """One output chunk (ftype, text), or None at the end."""
        while not self._out.done:
            try:
                ftype, data = await self._conn.recv()
            except Exception as e:  # noqa: BLE001 - wait() reports it
                self._out.finish(None, e)
                self._conn.close()
                return None
            if ftype in (proto.STDOUT, proto.STDERR):
                text = self._out.decoders[ftype].decode(data)
                self._out.tails[ftype].add(data)
                cb = self._out.callbacks[ftype]
                if cb is not None and text:
                    cb(text)
                if text:
                    return ftype, text
            elif ftype == proto.EXIT:
                self._out.finish(proto.Tlvs(data))
                self._conn.close()
            else:
                failure = proto.ProtocolError("unexpected frame 0x%02x" % ftype)
                if ftype == proto.ERROR:
                    t = proto.Tlvs(data)
                    failure = proto.AgentError(t.int(proto.TAG_ERRNO, 0), t.str(proto.TAG_MESSAGE, "error"))
                self._out.finish(None, failure)
                self._conn.close()
        return None

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self._next()
        if item is None:
            raise StopAsyncIteration
        return (item[1], None) if item[0] == proto.STDOUT else (None, item[1])

    async def wait(self, timeout=None):
        """As CommandHandle.wait (CommandExitError on a non-zero exit)."""
        timeout = cmds._check_timeout(self._a._s, timeout)

        async def drain():
            while await self._next() is not None:
                pass
        try:
            await asyncio.wait_for(drain(), timeout)
        except asyncio.TimeoutError:
            raise SandboxTimeoutError("sandbox %s: command %d still running after %g s"
                                      % (self._a.id, self.pid, timeout), self._a.id,
                                      result=self._out.result(self.pid)) from None
        if self._out.exit is None:
            f = self._out.failure
            await self._a._guest("command %d" % self.pid, _raise_async(f))
        res = self._out.result(self.pid)
        if res.returncode != 0:
            raise cmds._exit_error(self._a._s, "command %d" % self.pid, res)
        return res

    async def kill(self, signal=9):
        return await self._a.commands.kill(self.pid, signal)

    async def send_stdin(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._stdin_closed or self._out.done:
            raise StdinClosedError("sandbox %s: command %d: stdin is closed" % (self._a.id, self.pid), self._a.id)
        data = bytes(data)
        for off in range(0, len(data), proto.DATA_CHUNK):
            await self._conn.send(proto.DATA, data[off:off + proto.DATA_CHUNK])

    async def close_stdin(self):
        if self._stdin_closed or self._out.done:
            raise StdinClosedError("sandbox %s: command %d: stdin is closed" % (self._a.id, self.pid), self._a.id)
        await self._conn.send(proto.EOF)
        self._stdin_closed = True

    def disconnect(self):
        self._conn.close()
        self._out.finish(None, None)

    @property
    def stdout(self):
        return self._out.result(self.pid).stdout

    @property
    def stderr(self):
        return self._out.result(self.pid).stderr


async def _raise_async(e):
    raise e


class AsyncCommands:
    """sbx.commands for AsyncSandbox: run(), connect(), kill(), list()."""

    def __init__(self, asbx):
        self._a = asbx

    async def run(self, cmd, background=False, env=None, cwd=None, user=None, timeout=cmds.DEFAULT_TIMEOUT_S,
                  on_stdout=None, on_stderr=None, envs=None):
        """As Commands.run (stdin: use a background handle's send_stdin)."""
        a, s = self._a, self._a._s
        if background and timeout == cmds.DEFAULT_TIMEOUT_S:
            timeout = None
        timeout = cmds._check_timeout(s, timeout)
        env = dict(s.config.get("envs") or {}, **dict(envs or {}, **(env or {})))
        await a._refuse_if_paused("commands.run()")
        try:
            payload = proto.exec_request(cmd, env, cwd, None if timeout is None else max(1, int(timeout * 1000)),
                                         user, background=background)
        except ValueError as e:
            raise SandboxClientError("sandbox %s: commands.run: %s" % (s.id, e), status=400, sandbox_id=s.id) from None

        async def start():
            c = await a._open(None)
            try:
                await c.send(proto.EXEC, payload)
                if not background:
                    await c.send(proto.EOF)
                c.deadline = time.monotonic() + _scaled(10.0)
                ftype, data = await c.recv()
                if ftype == proto.ERROR:
                    proto._raise_error(data)
                if ftype != proto.STARTED:
                    raise proto.ProtocolError("exec: expected STARTED, got frame type 0x%02x" % ftype)
                c.deadline = None if timeout is None else time.monotonic() + timeout + _scaled(10.0)
                return AsyncCommandHandle(a, c, proto.Tlvs(data).int(proto.TAG_PID), on_stdout, on_stderr)
            except BaseException:
                c.close()
                raise
        h = await a._guest("commands.run", start())
        if background:
            h._conn.deadline = None
            return h
        try:
            while await h._next() is not None:
                pass
        finally:
            h._conn.close()  # before EXIT this kills the command (foreground semantics)
        if h._out.exit is None:
            try:
                await a._guest("commands.run", _raise_async(h._out.failure))
            except SandboxTimeoutError as e:
                e.result = h._out.result(h.pid)
                raise
        res = h._out.result(h.pid)
        if res.timed_out:
            raise SandboxTimeoutError("sandbox %s: command timed out after %g s" % (s.id, timeout), s.id, result=res)
        if res.returncode != 0:
            raise cmds._exit_error(s, "commands.run", res)
        return res

    async def connect(self, pid, on_stdout=None, on_stderr=None):
        a = self._a
        pid = cmds.Commands(a._s)._check_pid(pid)
        await a._refuse_if_paused("commands.connect()")

        async def attach():
            c = await a._open(None)
            try:
                await c.send(proto.ATTACH, proto.tlv(proto.TAG_PID, pid))
                c.deadline = time.monotonic() + _scaled(10.0)
                t = await _result(c)
                c.deadline = None
                return AsyncCommandHandle(a, c, pid, on_stdout, on_stderr, dropped=t.int(proto.TAG_DROPPED, 0))
            except BaseException:
                c.close()
                raise
        return await a._guest("commands.connect(%d)" % pid, attach(), pid=pid)

    async def kill(self, pid, signal=9):
        a = self._a
        pid = cmds.Commands(a._s)._check_pid(pid)
        if isinstance(signal, bool) or not isinstance(signal, int) or not 1 <= signal <= 64:
            raise SandboxClientError("signal must be 1..64, not %r" % (signal,), status=400, sandbox_id=a.id)

        async def kill():
            c = await a._open(_scaled(10.0))
            try:
                await c.send(proto.KILL, proto.tlv(proto.TAG_PID, pid) + proto.tlv(proto.TAG_SIGNAL, signal))
                t = await _result(c)
                return t.raw(proto.TAG_EXIT_CODE) is None and t.raw(proto.TAG_SIGNAL) is None
            finally:
                c.close()
        return await a._guest("commands.kill(%d)" % pid, kill(), pid=pid)

    async def list(self, include_exited=False):
        a = self._a

        async def lst():
            c = await a._open(_scaled(10.0))
            out = []
            try:
                await c.send(proto.LIST_PROCS)
                while True:
                    ftype, data = await c.recv()
                    if ftype == proto.EOF:
                        return out
                    if ftype == proto.ERROR:
                        proto._raise_error(data)
                    if ftype != proto.ENTRY or len(out) >= 4096:
                        raise proto.ProtocolError("list: unexpected frame 0x%02x or too many" % ftype)
                    t = proto.Tlvs(data)
                    args = [x.decode("utf-8", "replace") for x in t.all(proto.TAG_ARGV)]
                    shell, sig = t.str(proto.TAG_SHELL), t.int(proto.TAG_SIGNAL)
                    out.append(cmds.ProcessInfo(t.int(proto.TAG_PID), shell if shell is not None else " ".join(args),
                                                args, t.str(proto.TAG_CWD), -sig if sig else t.int(proto.TAG_EXIT_CODE)))
            finally:
                c.close()
        procs = sorted(await a._guest("commands.list", lst()), key=lambda p: p.pid or 0)
        return procs if include_exited else [p for p in procs if p.running]
