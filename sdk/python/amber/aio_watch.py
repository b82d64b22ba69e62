"""files.watch_dir for AsyncSandbox: a guest directory's changes as FilesystemEvents through
`async for`, read only while you iterate (the guest holds them meanwhile in its kernel's
inotify queue; see watch.py), and stop()."""
import time

from . import proto
from .aio import _result
from .sandbox import _scaled
from .watch import WatchHandle


class AsyncWatchHandle:
    """`async for event in handle` until stop() or the directory's removal; dirs_watched."""

    def __init__(self, conn, root, dirs_watched):
        self._conn, self.dirs_watched, self.ended = conn, dirs_watched, False
        self._root = WatchHandle.__new__(WatchHandle)  # borrows the sync handle's event decoding
        self._root._root = root.rstrip("/") or "/"

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.ended:
            raise StopAsyncIteration
        try:
            ftype, data = await self._conn.recv()
        except proto.ProtocolError:
            ftype, data = proto.EOF, b""
        if ftype == proto.ENTRY:
            return self._root._event(data)
        self.ended = True
        self._conn.close()
        if ftype == proto.ERROR:
            proto._raise_error(data)
        if ftype != proto.EOF:
            raise proto.ProtocolError("watch: unexpected frame type 0x%02x" % ftype)
        raise StopAsyncIteration

    async def stop(self):
        """Ends the watch in the guest (iteration then ends after the events already sent)."""
        if not self.ended:
            try:
                await self._conn.send(proto.EOF)
            except OSError:
                self.ended = True
                self._conn.close()


async def watch_dir(afiles, path, recursive=False):
    """AsyncFiles.watch_dir: starts the watch; returns an AsyncWatchHandle."""
    afiles._check("watch_dir", path)
    a = afiles._a
    payload = proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_RECURSIVE, 1 if recursive else 0)

    async def start():
        c = await a._open(None)
        try:
            await c.send(proto.WATCH, payload)
            c.deadline = time.monotonic() + _scaled(30.0)
            t = await _result(c)
            c.deadline = None
            return AsyncWatchHandle(c, path, t.int(proto.TAG_SIZE, 0))
        except BaseException:
            c.close()
            raise
    return await a._guest("watch_dir", start(), path=path)
