"""sbx.pty for AsyncSandbox: the same surface as pty.py with await, on the caller's loop (no
threads): create(), connect(), resize(), kill(), send_input(); handles give bytes to `async for`
and on_data, and read output only while you iterate or wait(), as AsyncCommandHandle does."""
import time

from . import commands as cmds
from . import proto
from .aio import AsyncCommandHandle, _result
from .errors import StdinClosedError
from .pty import DEFAULT_COLS, DEFAULT_ROWS, _check_size
from .sandbox import _scaled


class AsyncPtyHandle(AsyncCommandHandle):
    """A command on a pty: pid, send_input(), resize(), kill(), wait(), disconnect(), and
    `async for data in handle` (bytes)."""

    def __init__(self, asbx, conn, pid, on_data=None, dropped=0):
        super().__init__(asbx, conn, pid, dropped=dropped)
        self._on_data = on_data

    def _chunk(self, ftype, data):
        """A pty has one byte stream: stdout and stderr frames alike, as bytes."""
        self._out.tails[proto.STDOUT].add(data)
        if self._on_data is not None and data:
            self._on_data(bytes(data))
        return (proto.STDOUT, bytes(data)) if data else None

    async def __anext__(self):
        item = await self._next()
        if item is None:
            raise StopAsyncIteration
        return item[1]

    async def send_input(self, data):
        await self.send_stdin(data)

    async def resize(self, cols, rows):
        payload = _check_size(self._a._s, cols, rows)
        if self._out.done:
            raise StdinClosedError("sandbox %s: pty %d has ended" % (self._a.id, self.pid), self._a.id)
        await self._conn.send(proto.RESIZE, payload)


class AsyncPty:
    """AsyncSandbox.pty: create(), connect(), resize(), kill(), send_input()."""

    def __init__(self, asbx):
        self._a = asbx

    async def create(self, cols=DEFAULT_COLS, rows=DEFAULT_ROWS, cmd="/bin/sh", on_data=None, env=None,
                     cwd=None, user=None, timeout=None, envs=None):
        a, s = self._a, self._a._s
        size = _check_size(s, cols, rows)
        timeout = cmds._check_timeout(s, timeout)
        env = dict({"TERM": "xterm-256color"}, **dict(s.config.get("envs") or {}, **dict(envs or {}, **(env or {}))))
        if cmd == "/bin/sh":
            cmd = ["/bin/sh"]
        payload = proto.exec_request(cmd, env, cwd, None if timeout is None else max(1, int(timeout * 1000)),
                                     user, background=True) + size
        await a._refuse_if_paused("pty.create()")

        async def start():
            c = await a._open(None)
            try:
                await c.send(proto.PTY, payload)
                c.deadline = time.monotonic() + _scaled(10.0)
                ftype, data = await c.recv()
                started = proto.expect(ftype, data, proto.STARTED, "pty")
                c.deadline = None
                return AsyncPtyHandle(a, c, started.int(proto.TAG_PID), on_data)
            except BaseException:
                c.close()
                raise
        return await a._guest("pty.create", start())

    async def connect(self, pid, on_data=None):
        a = self._a
        pid = cmds.Commands(a._s)._check_pid(pid)
        await a._refuse_if_paused("pty.connect()")

        async def attach():
            c = await a._open(None)
            try:
                await c.send(proto.ATTACH, proto.tlv(proto.TAG_PID, pid))
                c.deadline = time.monotonic() + _scaled(10.0)
                t = await _result(c)
                c.deadline = None
                return AsyncPtyHandle(a, c, pid, on_data, dropped=t.int(proto.TAG_DROPPED, 0))
            except BaseException:
                c.close()
                raise
        return await a._guest("pty.connect(%d)" % pid, attach(), pid=pid)

    async def resize(self, pid, cols, rows):
        a = self._a
        pid = cmds.Commands(a._s)._check_pid(pid)
        payload = proto.tlv(proto.TAG_PID, pid) + _check_size(a._s, cols, rows)

        async def resize():
            c = await a._open(_scaled(10.0))
            try:
                await c.send(proto.RESIZE, payload)
                await _result(c)
            finally:
                c.close()
        await a._guest("pty.resize(%d)" % pid, resize(), pid=pid)

    async def kill(self, pid, signal=9):
        return await self._a.commands.kill(pid, signal)

    async def send_input(self, pid, data):
        h = await self.connect(pid)
        try:
            await h.send_input(data)
        finally:
            h.disconnect()
