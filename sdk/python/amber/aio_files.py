"""sbx.files for AsyncSandbox (aio.py): the guest's file system over asyncio streams, with the
same bounds and errors as files.py."""
from . import files as fs
from . import proto
from .aio import _raise_async, _result
from .errors import SandboxClientError, SandboxFileNotFoundError
from .sandbox import _scaled


class AsyncFiles:
    """sbx.files for AsyncSandbox: read (text, bytes, or an async iterator of chunks), write
    (str, bytes, or an async/sync iterable of chunks), list, exists, get_info, remove, rename,
    make_dir; the same bounds and errors as Files."""

    def __init__(self, asbx):
        self._a = asbx

    def _check(self, what, path):
        if not isinstance(path, str) or not path.startswith("/"):
            raise SandboxClientError("%s: the guest path must be an absolute str, not %r" % (what, path),
                                     status=400, sandbox_id=self._a.id)

    async def _request(self, what, path, ftype, payload):
        self._check(what, path)
        a = self._a

        async def req():
            c = await a._open(_scaled(fs.META_TIMEOUT_S))
            try:
                await c.send(ftype, payload)
                return await _result(c)
            finally:
                c.close()
        return await a._guest(what, req(), path=path)

    async def read(self, path, format="text", max_size=fs.READ_MAX):
        self._check("read", path)
        if format not in ("text", "bytes", "stream"):
            raise SandboxClientError("format must be 'text', 'bytes' or 'stream', not %r" % (format,),
                                     status=400, sandbox_id=self._a.id)
        a = self._a

        async def open_():
            c = await a._open(None)
            try:
                await c.send(proto.READ_FILE, proto.tlv(proto.TAG_PATH, path))
                return c, (await _result(c)).int(proto.TAG_SIZE)
            except BaseException:
                c.close()
                raise
        c, size = await a._guest("read", open_(), path=path)

        async def chunks():
            try:
                while True:
                    ftype, data = await a._guest("read", c.recv(), path=path)
                    if ftype == proto.EOF:
                        return
                    if ftype == proto.ERROR:
                        await a._guest("read", _raise_async(proto.AgentError(
                            proto.Tlvs(data).int(proto.TAG_ERRNO, 0), proto.Tlvs(data).str(proto.TAG_MESSAGE, ""))),
                            path=path)
                    if ftype != proto.DATA:
                        raise SandboxClientError("read %s: unexpected frame 0x%02x" % (path, ftype), status=502)
                    yield data
            finally:
                c.close()
        if format == "stream":
            return chunks()
        if size is not None and size > max_size:
            c.close()
            raise SandboxClientError("sandbox %s: read %s: %d bytes exceed max_size=%d (use format='stream')"
                                     % (a.id, path, size, max_size), status=413, sandbox_id=a.id)
        buf = bytearray()
        async for chunk in chunks():
            buf += chunk
            if len(buf) > max_size:
                raise SandboxClientError("sandbox %s: read %s: more than max_size=%d bytes" % (a.id, path, max_size),
                                         status=413, sandbox_id=a.id)
        return buf.decode("utf-8", "replace") if format == "text" else bytes(buf)

    async def write(self, path, data, mode=0o644):
        self._check("write", path)
        a = self._a

        async def pieces():
            if hasattr(data, "__aiter__"):
                async for p in data:
                    for q in fs._chunks(p):
                        yield q
            else:
                for q in fs._chunks(data):
                    yield q

        async def write():
            c = await a._open(None)
            try:
                try:
                    await c.send(proto.WRITE_FILE, proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_MODE, mode))
                    async for q in pieces():
                        if q:
                            await c.send(proto.DATA, q)
                    await c.send(proto.EOF)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent refused early: its ERROR says why
                t = await _result(c)
                return fs.WriteInfo(path, t.int(proto.TAG_SIZE, 0), t.int(proto.TAG_MODE, mode) & 0o7777)
            finally:
                c.close()
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise SandboxClientError("mode must be an integer from 0 to 0o7777, not %r" % (mode,), status=400,
                                     sandbox_id=a.id)
        return await a._guest("write", write(), path=path)

    async def watch_dir(self, path, recursive=False):
        """As Files.watch_dir, as an AsyncWatchHandle (aio_watch.py): `async for event in h`."""
        from .aio_watch import watch_dir
        return await watch_dir(self, path, recursive)

    async def get_info(self, path):
        return fs.EntryInfo(path, await self._request("get_info", path, proto.STAT, proto.tlv(proto.TAG_PATH, path)))

    async def exists(self, path):
        try:
            await self.get_info(path)
            return True
        except SandboxFileNotFoundError:
            return False

    async def remove(self, path):
        await self._request("remove", path, proto.REMOVE, proto.tlv(proto.TAG_PATH, path))

    async def rename(self, old_path, new_path):
        self._check("rename", new_path)
        await self._request("rename", old_path, proto.RENAME,
                            proto.tlv(proto.TAG_PATH, old_path) + proto.tlv(proto.TAG_NEW_PATH, new_path))
        return await self.get_info(new_path)

    async def make_dir(self, path, mode=0o755):
        t = await self._request("make_dir", path, proto.MKDIR, proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_MODE, mode))
        return not t.int(proto.TAG_EXISTS, 0)

    async def list(self, path, depth=1):
        self._check("list", path)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= proto.MAX_DEPTH:
            raise SandboxClientError("depth must be an integer from 1 to %d, not %r" % (proto.MAX_DEPTH, depth),
                                     status=400, sandbox_id=self._a.id)
        a = self._a

        async def lst():
            c = await a._open(_scaled(fs.META_TIMEOUT_S))
            out = []
            try:
                await c.send(proto.LIST_DIR, proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_DEPTH, depth))
                while True:
                    ftype, data = await c.recv()
                    if ftype == proto.EOF:
                        return sorted(out, key=lambda e: e.path)
                    if ftype == proto.ERROR:
                        proto._raise_error(data)
                    if ftype != proto.ENTRY or len(out) >= fs.MAX_ENTRIES:
                        raise proto.ProtocolError("list: unexpected frame 0x%02x or more than %d entries"
                                                  % (ftype, fs.MAX_ENTRIES))
                    t = proto.Tlvs(data)
                    out.append(fs.EntryInfo(t.str(proto.TAG_PATH, ""), t))
            finally:
                c.close()
        return await a._guest("list", lst(), path=path)
