"""AsyncSandbox's commands (aio.py): sbx.commands.run(), connect(), kill(), list() and the
background handle, over asyncio streams on the caller's loop with no thread per call."""
import asyncio
import time

from . import commands as cmds
from . import proto
from .errors import SandboxClientError, SandboxTimeoutError, StdinClosedError
from .sandbox import _scaled


async def _result(c, what="request"):
    ftype, data = await c.recv()
    return proto.expect(ftype, data, proto.RESULT, what)


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
                item = self._chunk(ftype, data)
                if item is not None:
                    return item
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

    def _chunk(self, ftype, data):
        """Keeps and hands on one output frame; returns (ftype, text), or None if it decoded to
        nothing yet (a split UTF-8 sequence)."""
        text = self._out.decoders[ftype].decode(data)
        self._out.tails[ftype].add(data)
        cb = self._out.callbacks[ftype]
        if cb is not None and text:
            cb(text)
        return (ftype, text) if text else None

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
                started = proto.expect(ftype, data, proto.STARTED, "exec")
                c.deadline = None if timeout is None else time.monotonic() + timeout + _scaled(10.0)
                return AsyncCommandHandle(a, c, started.int(proto.TAG_PID), on_stdout, on_stderr)
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
