"""sbx.files.watch_dir: a guest directory's changes (inotify in the agent) as FilesystemEvents.

The agent streams one event per change until stop(); events go to on_event (on the handle's
reader thread) or, without a callback, to a queue that get_new_events() empties. The queue holds
at most MAX_QUEUED events (the oldest are dropped and counted in .dropped), so a guest that
changes files faster than they are read cannot grow this process's memory. Event paths are plain
strings: nothing here opens a host path.
"""
import collections
import threading
import time

from . import proto

MAX_QUEUED = 10000
_EVENTS = {1: "create", 2: "write", 3: "remove", 4: "rename", 5: "chmod", 6: "overflow"}


class FilesystemEvent:
    """One change: type ("create", "write", "remove", "rename" (the old name), "chmod", or
    "overflow" when the guest kernel's queue overflowed and events were lost), path (the guest's
    absolute path), name (relative to the watched directory) and is_dir."""

    def __init__(self, etype, path, name, is_dir):
        self.type, self.path, self.name, self.is_dir = etype, path, name, is_dir

    def __repr__(self):
        return "FilesystemEvent(type=%r, name=%r)" % (self.type, self.name)


class WatchHandle:
    """A running watch: stop(), get_new_events(), dirs_watched, dropped, and error (what ended
    it, if not stop() or the directory's removal)."""

    def __init__(self, sbx, conn, root, on_event, dirs_watched):
        self._sbx, self._conn, self._root, self._on_event = sbx, conn, root.rstrip("/") or "/", on_event
        self.dirs_watched = dirs_watched
        self.dropped = 0
        self.error = None
        self.ended = False
        self._queue = collections.deque()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._read, name="amber-watch", daemon=True)
        self._thread.start()

    def _event(self, payload):
        t = proto.Tlvs(payload)
        etype = _EVENTS.get(t.int(proto.TAG_EVENT, 0))
        if etype is None:
            raise proto.ProtocolError("watch: unknown event %r" % t.int(proto.TAG_EVENT, 0))
        path = t.str(proto.TAG_PATH, "")
        prefix = self._root if self._root == "/" else self._root + "/"
        if etype == "overflow":
            name = ""
        elif path == self._root:
            name = "."
        elif path.startswith(prefix):
            name = path[len(prefix):]
        else:
            raise proto.ProtocolError("watch: event path %r is outside %r" % (proto.escape_text(path)[:200], self._root))
        return FilesystemEvent(etype, path, name, t.int(proto.TAG_TYPE, 0) == proto.FT_DIR)

    def _read(self):
        try:
            while True:
                ftype, data = self._conn.recv()
                if ftype == proto.EOF:
                    return
                if ftype == proto.ERROR:
                    proto._raise_error(data)
                if ftype != proto.ENTRY:
                    raise proto.ProtocolError("watch: unexpected frame type 0x%02x" % ftype)
                ev = self._event(data)
                if self._on_event is not None:
                    self._on_event(ev)
                    continue
                with self._lock:
                    self._queue.append(ev)
                    while len(self._queue) > MAX_QUEUED:
                        self._queue.popleft()
                        self.dropped += 1
        except Exception as e:  # noqa: BLE001 - kept in .error
            if not self._stopping:
                self.error = e
        finally:
            self.ended = True
            self._conn.close()

    def get_new_events(self):
        """The events queued since the last call (only without on_event)."""
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
        return out

    def stop(self, timeout=5.0):
        """Ends the watch in the guest and waits (up to timeout s) for the reader to finish."""
        if not self.ended:
            try:
                self._conn.send(proto.EOF)
            except (OSError, proto.AgentTimeout):
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopping = True
            try:
                self._conn.sock.shutdown(2)
            except OSError:
                pass
            self._thread.join(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def watch_dir(files, path, on_event=None, recursive=False):
    """Starts watching the guest directory path; returns a WatchHandle (see Files.watch_dir)."""
    sbx = files._sbx
    payload = proto.tlv(proto.TAG_PATH, path) + proto.tlv(proto.TAG_RECURSIVE, 1 if recursive else 0)

    def start():
        c = files._open(None)
        c.deadline = time.monotonic() + files._meta_timeout()
        dirs = c.request(proto.WATCH, payload, "watch", keep=True).int(proto.TAG_SIZE, 0)
        c.deadline = None
        return WatchHandle(sbx, c, path, on_event, dirs)

    return files._call("watch_dir", path, start)
