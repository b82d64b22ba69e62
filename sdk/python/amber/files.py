"""sbx.files: the guest's file system (E2B's Filesystem surface), streamed in 64 KiB chunks.

Paths are the guest's and must be absolute. Nothing here opens a host path a guest named:
listings and infos are plain values, and every guest-supplied field is bounded (modes masked to
0o7777, types mapped to a fixed set, listings capped at MAX_ENTRIES, reads at max_size).
"""
import datetime
import errno as errno_
import os
import stat as stat_

from . import proto
from .errors import SandboxClientError, SandboxFileNotFoundError, SandboxFileTypeError

READ_MAX = 256 * 1024 * 1024  # default bound of read(format="text"|"bytes"); stream has none
MAX_ENTRIES = 100000  # the agent's bound on one listing (PROTO_MAX_ENTRIES)
META_TIMEOUT_S = 30.0
_TYPES = {proto.FT_FILE: "file", proto.FT_DIR: "dir", proto.FT_SYMLINK: "symlink"}


class EntryInfo:
    """A guest path's metadata: name, path, type ("file", "dir", "symlink" or "other"), size,
    mode (permission bits), permissions ("rwxr-xr-x"), mtime (seconds since the epoch, float)
    and modified_time (an aware datetime)."""

    def __init__(self, path, t):
        self.path = path
        self.name = os.path.basename(path.rstrip("/")) or "/"
        self.type = _TYPES.get(t.int(proto.TAG_TYPE, proto.FT_OTHER), "other")
        self.size = t.int(proto.TAG_SIZE, 0)
        self.mode = t.int(proto.TAG_MODE, 0) & 0o7777
        self.mtime = t.int(proto.TAG_MTIME_NS, 0) / 1e9

    @property
    def permissions(self):
        return stat_.filemode(self.mode)[1:]

    @property
    def modified_time(self):
        return datetime.datetime.fromtimestamp(self.mtime, datetime.timezone.utc)

    def __repr__(self):
        return "EntryInfo(path=%r, type=%r, size=%r, mode=%s)" % (self.path, self.type, self.size, oct(self.mode))


class WriteInfo:
    """What write() wrote: path, name, size (bytes), mode."""

    def __init__(self, path, size, mode):
        self.path, self.size, self.mode = path, size, mode
        self.name = os.path.basename(path)
        self.type = "file"

    def __repr__(self):
        return "WriteInfo(path=%r, size=%r)" % (self.path, self.size)


def _chunks(data):
    """data (str, bytes-like, a file object with read(), or an iterable of bytes) in pieces of
    at most DATA_CHUNK bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for off in range(0, len(view), proto.DATA_CHUNK):
            yield bytes(view[off:off + proto.DATA_CHUNK])
        return
    if hasattr(data, "read"):
        while True:
            b = data.read(proto.DATA_CHUNK)
            if not b:
                return
            yield b.encode("utf-8") if isinstance(b, str) else bytes(b)
        return
    for piece in data:
        piece = piece.encode("utf-8") if isinstance(piece, str) else bytes(piece)
        for off in range(0, len(piece), proto.DATA_CHUNK):
            yield piece[off:off + proto.DATA_CHUNK]


class Files:
    """sbx.files: read, write, list, exists, get_info, remove, rename, make_dir."""

    def __init__(self, sbx):
        self._sbx = sbx

    def _call(self, what, path, fn):
        """fn() with agent errors mapped: ENOENT -> SandboxFileNotFoundError, EISDIR/ENOTDIR/
        EEXIST -> SandboxFileTypeError, the rest as execute() maps them."""
        sbx = self._sbx
        if not isinstance(path, str) or not path.startswith("/"):
            raise SandboxClientError("%s: the guest path must be an absolute str, not %r" % (what, path),
                                     status=400, sandbox_id=sbx.id)
        sbx._refuse_if_paused("files.%s()" % what)

        def inner():
            try:
                return fn()
            except proto.AgentError as e:
                if e.errno == errno_.ENOENT:
                    raise SandboxFileNotFoundError("sandbox %s: %s %s: no such file or directory in the guest"
                                                   % (sbx.id, what, path), sbx.id, path) from None
                why = {errno_.EISDIR: "is a directory, not a file",
                       errno_.ENOTDIR: "is not a directory (or a component of it is not)",
                       errno_.EEXIST: "exists and is not a directory"}.get(e.errno)
                if why:
                    raise SandboxFileTypeError("sandbox %s: %s %s: %s" % (sbx.id, what, path, why),
                                               sbx.id, path) from None
                raise
        return sbx._guest_call("files.%s %s" % (what, path), inner)

    def _open(self, timeout):
        return self._sbx._agent()._open(timeout)

    def _meta_timeout(self):
        return self._sbx._scaled_s(META_TIMEOUT_S)

    def _request(self, ftype, payload):
        return self._open(self._meta_timeout()).request(ftype, payload, "request 0x%02x" % ftype)

    # ---------------------------------------------------------------- read and write
    def read(self, path, format="text", max_size=READ_MAX):
        """The guest file path: format "text" (str, UTF-8 with replacement), "bytes", or
        "stream" (an iterator of bytes chunks of at most 64 KiB: no whole-file buffer; close()
        it to stop early). text and bytes refuse files over max_size bytes."""
        if format not in ("text", "bytes", "stream"):
            raise SandboxClientError("format must be 'text', 'bytes' or 'stream', not %r" % (format,),
                                     status=400, sandbox_id=self._sbx.id)
        if format == "stream":
            return self._call("read", path, lambda: self._open_stream(path))

        def read_all():
            it = self._open_stream(path)
            buf = bytearray()
            try:
                if it.size is not None and it.size > max_size:
                    raise SandboxClientError("sandbox %s: read %s: %d bytes exceed max_size=%d (use "
                                             "format='stream')" % (self._sbx.id, path, it.size, max_size),
                                             status=413, sandbox_id=self._sbx.id)
                for chunk in it:
                    buf += chunk
                    if len(buf) > max_size:
                        raise SandboxClientError("sandbox %s: read %s: more than max_size=%d bytes"
                                                 % (self._sbx.id, path, max_size), status=413,
                                                 sandbox_id=self._sbx.id)
            finally:
                it.close()
            return bytes(buf)

        data = self._call("read", path, read_all)
        return data.decode("utf-8", "replace") if format == "text" else data

    def _open_stream(self, path):
        c = self._open(None)
        t = c.request(proto.READ_FILE, proto.tlv(proto.TAG_PATH, path), "read", keep=True)
        return _ReadStream(self._sbx, c, path, t.int(proto.TAG_SIZE))

    def write(self, path, data, mode=0o644):
        """Writes data to the guest file path, replacing it whole (PROTOCOL.md write_file):
        str (UTF-8), bytes, a file object opened for reading, or an iterable of bytes chunks,
        sent in 64 KiB chunks as they are read. Returns WriteInfo(path, size, mode)."""
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise SandboxClientError("mode must be an integer from 0 to 0o7777, not %r" % (mode,),
                                     status=400, sandbox_id=self._sbx.id)

        def write():
            c = self._open(None)
            try:
                try:
                    c.send(proto.WRITE_FILE, proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_MODE, mode))
                    for chunk in _chunks(data):
                        if chunk:
                            c.send(proto.DATA, chunk)
                    c.send(proto.EOF)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent refused early: its ERROR frame says why
                c.deadline = None
                t = c.result("write")
                return WriteInfo(path, t.int(proto.TAG_SIZE, 0), t.int(proto.TAG_MODE, mode) & 0o7777)
            finally:
                c.close()

        return self._call("write", path, write)

    # ---------------------------------------------------------------- metadata
    def get_info(self, path):
        """EntryInfo of path (a symlink is followed). SandboxFileNotFoundError if missing."""
        return self._call("get_info", path,
                          lambda: EntryInfo(path, self._request(proto.STAT, proto.tlv(proto.TAG_PATH, path))))

    def watch_dir(self, path, on_event=None, recursive=False):
        """Watches guest directory path (and its subdirectories if recursive) for create,
        write, remove, rename and chmod; returns a WatchHandle (watch.py): stop(),
        get_new_events(). on_event(FilesystemEvent) runs on the handle's reader thread.
        A missing path raises SandboxFileNotFoundError, a non-directory SandboxFileTypeError."""
        from .watch import watch_dir
        return watch_dir(self, path, on_event, recursive)

    def exists(self, path):
        """True if path exists in the guest (a dangling symlink does not)."""
        try:
            self.get_info(path)
            return True
        except SandboxFileNotFoundError:
            return False

    def list(self, path, depth=1):
        """The entries under directory path, depth levels down (1: its children; at most 16),
        as EntryInfo sorted by path. Symlinks are listed as such and never followed."""
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= proto.MAX_DEPTH:
            raise SandboxClientError("depth must be an integer from 1 to %d, not %r" % (proto.MAX_DEPTH, depth),
                                     status=400, sandbox_id=self._sbx.id)

        def lst():
            c = self._open(self._meta_timeout())
            out = []
            try:
                c.send(proto.LIST_DIR, proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_DEPTH, depth))
                while True:
                    ftype, data = c.recv()
                    if ftype == proto.EOF:
                        break
                    if ftype == proto.ERROR:
                        proto._raise_error(data)
                    if ftype != proto.ENTRY:
                        raise proto.ProtocolError("list: unexpected frame type 0x%02x" % ftype)
                    if len(out) >= MAX_ENTRIES:
                        raise proto.ProtocolError("list: more than %d entries" % MAX_ENTRIES)
                    t = proto.Tlvs(data)
                    out.append(EntryInfo(t.str(proto.TAG_PATH, ""), t))
            finally:
                c.close()
            return sorted(out, key=lambda e: e.path)

        return self._call("list", path, lst)

    def remove(self, path):
        """Removes the file, symlink or directory tree at path."""
        self._call("remove", path, lambda: self._request(proto.REMOVE, proto.tlv(proto.TAG_PATH, path)))

    def rename(self, old_path, new_path):
        """Renames old_path to new_path (rename(2) in the guest); returns new_path's EntryInfo."""
        if not isinstance(new_path, str) or not new_path.startswith("/"):
            raise SandboxClientError("rename: the new guest path must be an absolute str, not %r" % (new_path,),
                                     status=400, sandbox_id=self._sbx.id)
        self._call("rename", old_path, lambda: self._request(
            proto.RENAME, proto.tlv(proto.TAG_PATH, old_path) + proto.tlv(proto.TAG_NEW_PATH, new_path)))
        return self.get_info(new_path)

    def make_dir(self, path, mode=0o755):
        """Makes directory path and its missing parents. True if it was made, False if it was
        already a directory; SandboxFileTypeError if something else is there."""
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise SandboxClientError("mode must be an integer from 0 to 0o7777, not %r" % (mode,),
                                     status=400, sandbox_id=self._sbx.id)
        t = self._call("make_dir", path, lambda: self._request(
            proto.MKDIR, proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_MODE, mode)))
        return not t.int(proto.TAG_EXISTS, 0)


class _ReadStream:
    """An iterator over a guest file's DATA chunks; holds one agent connection until the end."""

    def __init__(self, sbx, conn, path, size):
        self._sbx, self._conn, self.path, self.size = sbx, conn, path, size
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        try:
            ftype, data = self._sbx._guest_call("files.read %s" % self.path, self._conn.recv)
        except BaseException:
            self.close()
            raise
        if ftype == proto.DATA:
            return data
        self.close()
        if ftype == proto.EOF:
            raise StopIteration
        if ftype == proto.ERROR:
            t = proto.Tlvs(data)
            raise SandboxClientError("sandbox %s: read %s: %s" % (self._sbx.id, self.path,
                                                                  t.str(proto.TAG_MESSAGE, "error")),
                                     status=400, sandbox_id=self._sbx.id)
        raise SandboxClientError("sandbox %s: read %s: unexpected frame type 0x%02x"
                                 % (self._sbx.id, self.path, ftype), status=502, sandbox_id=self._sbx.id)

    def close(self):
        if not self._done:
            self._done = True
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
