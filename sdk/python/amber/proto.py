"""The amber-agent wire protocol v1 (proto/PROTOCOL.md): framing, TLVs and a client.

Pure parts (encode_frame, FrameReader, tlv, decode_tlvs) need no socket. AgentClient runs one
request per connection, as the protocol requires, over a socket from a connect function:
connect_unix() for `amber-agent --listen unix:PATH`, connect_hybrid_vsock() for amber's
hybrid vsock socket (`CONNECT <port>\\n` -> `OK <hostport>\\n`).
"""
import socket
import struct
import threading
import time

VERSION = 1
HDR = struct.Struct(">IBI")  # payload length, type, stream id
HDR_LEN = HDR.size
MAX_PAYLOAD = 1024 * 1024
DATA_CHUNK = 64 * 1024
MAX_STR = 4096
DEFAULT_PORT = 1024

PING, EXEC, READ_FILE, WRITE_FILE, SHUTDOWN = 0x01, 0x02, 0x03, 0x04, 0x05
ATTACH, KILL, LIST_PROCS = 0x06, 0x07, 0x08
STAT, LIST_DIR, REMOVE, RENAME, MKDIR = 0x09, 0x0A, 0x0B, 0x0C, 0x0D
PTY, WATCH = 0x0E, 0x0F
DATA, EOF, RESIZE = 0x10, 0x11, 0x12
RESULT, STDOUT, STDERR, EXIT, STARTED, ENTRY, ERROR = 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x7F
KNOWN_TYPES = frozenset(
    (PING, EXEC, READ_FILE, WRITE_FILE, SHUTDOWN, ATTACH, KILL, LIST_PROCS, STAT, LIST_DIR, REMOVE,
     RENAME, MKDIR, PTY, WATCH, DATA, EOF, RESIZE, RESULT, STDOUT, STDERR, EXIT, STARTED, ENTRY,
     ERROR)
)

TAG_ARGV, TAG_SHELL, TAG_ENV, TAG_CWD, TAG_TIMEOUT_MS, TAG_USER = 1, 2, 3, 4, 5, 6
TAG_PATH, TAG_MODE, TAG_ACTION = 7, 8, 9
TAG_PROTO_VERSION, TAG_AGENT_VERSION, TAG_UPTIME_MS = 16, 17, 18
TAG_EXIT_CODE, TAG_SIGNAL, TAG_DURATION_MS, TAG_TIMED_OUT, TAG_SIZE, TAG_PID = 19, 20, 21, 22, 23, 24
TAG_BACKGROUND, TAG_DROPPED, TAG_TYPE, TAG_MTIME_NS, TAG_DEPTH, TAG_NEW_PATH, TAG_EXISTS = (
    25, 26, 27, 28, 29, 30, 31)
TAG_ERRNO, TAG_MESSAGE = 32, 33
TAG_COLS, TAG_ROWS, TAG_RECURSIVE, TAG_EVENT = 34, 35, 36, 37
MAX_WINSIZE = 4096  # largest pty side (COLS, ROWS)
FT_OTHER, FT_FILE, FT_DIR, FT_SYMLINK = 0, 1, 2, 3
MAX_DEPTH = 16

POWEROFF, REBOOT = 0, 1

# What the client buffers from the guest at most, unless the caller says otherwise.
MAX_FILE_BYTES = 256 * 1024 * 1024  # read_file
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # exec, per stream (stdout, stderr)


class ProtocolError(Exception):
    """The peer broke the protocol (malformed frame, unexpected type, early close)."""


def escape_text(text):
    """Guest text made safe to print: control characters, DEL and backslash as \\xNN (or
    \\uNNNN for C1 controls), so no escape sequence or line break of the guest's reaches a
    terminal or a log."""
    out = []
    for ch in text:
        o = ord(ch)
        if o < 0x20 or o == 0x7F or ch == "\\":
            out.append("\\x%02x" % o)
        elif 0x80 <= o < 0xA0:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    return "".join(out)


class AgentError(Exception):
    """The agent answered ERROR{ERRNO, MESSAGE}. message is escaped (escape_text)."""

    def __init__(self, errno_, message):
        message = escape_text(message)
        super().__init__("%s (errno %d)" % (message, errno_))
        self.errno = errno_
        self.message = message


class AgentLimitError(ProtocolError):
    """The guest sent more than the caller allowed to buffer (max_bytes, max_output_bytes)."""


class AgentTimeout(Exception):
    """No answer before the deadline."""


def encode_frame(ftype, stream_id, payload=b""):
    """One frame: the 9-byte header and the payload. Raises ValueError past 1 MiB."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("frame payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
    if ftype not in KNOWN_TYPES:
        raise ValueError("unknown frame type 0x%02x" % ftype)
    return HDR.pack(len(payload), ftype, stream_id & 0xFFFFFFFF) + bytes(payload)


def tlv(tag, value):
    """One TLV. int -> 8-byte unsigned; str -> UTF-8 (no NUL, <= 4096 bytes); bytes as they are."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if not 0 <= value < 1 << 64:
            raise ValueError("TLV %d: integer %d out of range" % (tag, value))
        raw = value.to_bytes(8, "big")
    else:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if b"\0" in raw:
            raise ValueError("TLV %d: strings cannot contain NUL bytes" % tag)
        if len(raw) > MAX_STR:
            raise ValueError("TLV %d: string of %d bytes exceeds %d" % (tag, len(raw), MAX_STR))
    return struct.pack(">HI", tag, len(raw)) + raw


def decode_tlvs(payload):
    """The TLVs of a payload as a list of (tag, raw bytes). Raises ProtocolError if truncated."""
    out, off = [], 0
    while off < len(payload):
        if len(payload) - off < 6:
            raise ProtocolError("truncated TLV header at offset %d" % off)
        tag, n = struct.unpack_from(">HI", payload, off)
        off += 6
        if n > len(payload) - off:
            raise ProtocolError("TLV %d length %d runs past the payload" % (tag, n))
        out.append((tag, bytes(payload[off : off + n])))
        off += n
    return out


class Tlvs:
    """Decoded TLVs with typed getters (first occurrence wins; repeatable tags via all())."""

    def __init__(self, payload):
        self.items = decode_tlvs(payload)

    def raw(self, tag):
        for t, v in self.items:
            if t == tag:
                return v
        return None

    def int(self, tag, default=None):
        v = self.raw(tag)
        if v is None:
            return default
        if len(v) != 8:
            raise ProtocolError("TLV %d: integer of %d bytes (want 8)" % (tag, len(v)))
        return int.from_bytes(v, "big")

    def str(self, tag, default=None):
        v = self.raw(tag)
        return default if v is None else v.decode("utf-8", "replace")

    def all(self, tag):
        return [v for t, v in self.items if t == tag]


class FrameReader:
    """Incremental frame parser over a byte stream: feed() bytes, next() frames."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def pending(self):
        return len(self.buf)

    def next(self):
        """(type, stream_id, payload bytes), or None if more bytes are needed.

        Raises ProtocolError for a declared length over 1 MiB or an unknown type (as the C codec).
        """
        if len(self.buf) < HDR_LEN:
            return None
        n, ftype, sid = HDR.unpack_from(self.buf, 0)
        if n > MAX_PAYLOAD:
            raise ProtocolError("frame length %d exceeds %d" % (n, MAX_PAYLOAD))
        if ftype not in KNOWN_TYPES:
            raise ProtocolError("unknown frame type 0x%02x" % ftype)
        if len(self.buf) - HDR_LEN < n:
            return None
        payload = bytes(self.buf[HDR_LEN : HDR_LEN + n])
        del self.buf[: HDR_LEN + n]
        return ftype, sid, payload


def exec_request(command, env=None, cwd=None, timeout_ms=None, user=None, background=False):
    """The EXEC payload. command: a shell string (SHELL) or a list of arguments (ARGV);
    background=True adds BACKGROUND=1 (the command outlives the connection)."""
    parts = []
    if isinstance(command, str):
        parts.append(tlv(TAG_SHELL, command))
    else:
        args = [str(a) for a in command]
        if not args or not args[0]:
            raise ValueError("command: an argument list needs a non-empty first element")
        parts += [tlv(TAG_ARGV, a) for a in args]
    for k, v in (env or {}).items():
        if not k or "=" in k:
            raise ValueError("env: bad variable name %r" % (k,))
        parts.append(tlv(TAG_ENV, "%s=%s" % (k, v)))
    if cwd is not None:
        parts.append(tlv(TAG_CWD, cwd))
    if timeout_ms:
        parts.append(tlv(TAG_TIMEOUT_MS, int(timeout_ms)))
    if user is not None:
        parts.append(tlv(TAG_USER, str(user)))
    if background:
        parts.append(tlv(TAG_BACKGROUND, 1))
    return b"".join(parts)


def connect_unix(path, timeout):
    """A stream socket connected to the Unix socket path (an agent's --listen unix:PATH)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        return s, b""
    except BaseException:
        s.close()
        raise


def connect_hybrid_vsock(uds_path, port, timeout):
    """Connects through amber's hybrid vsock socket; returns (socket, bytes read past OK line).

    Raises ConnectionError when the guest refuses or has no listener on port yet.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(uds_path)
        s.sendall(b"CONNECT %d\n" % port)
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(256)
            if not chunk:
                raise ConnectionError("vsock port %d: the connection closed before OK" % port)
            buf += chunk
            if len(buf) > 256:
                raise ConnectionError("vsock port %d: bad handshake reply %r" % (port, buf[:64]))
        line, rest = buf.split(b"\n", 1)
        if not line.startswith(b"OK "):
            raise ConnectionError("vsock port %d: handshake refused: %r" % (port, line[:64]))
        return s, rest
    except BaseException:
        s.close()
        raise


class ExecResult:
    """What a command did: stdout/stderr (str, UTF-8 with replacement) and their raw bytes,
    returncode (the exit code, or -N when killed by signal N, as subprocess does)."""

    def __init__(self, stdout=b"", stderr=b"", exit_code=None, signal=None, pid=None,
                 duration_ms=None, timed_out=False):
        self.stdout_bytes = bytes(stdout)
        self.stderr_bytes = bytes(stderr)
        self.signal = signal
        self.pid = pid
        self.duration_ms = duration_ms
        self.timed_out = bool(timed_out)
        if signal:
            self.returncode = -signal
        else:
            self.returncode = exit_code

    @property
    def stdout(self):
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self):
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def exit_code(self):
        return self.returncode

    @property
    def ok(self):
        return self.returncode == 0

    def __repr__(self):
        return "ExecResult(returncode=%r, stdout=%r, stderr=%r)" % (
            self.returncode, self.stdout[:200], self.stderr[:200])


class _Conn:
    """One agent connection: frame I/O with a deadline and a periodic liveness check."""

    SLICE_S = 0.5

    def __init__(self, sock, leftover, deadline, check):
        self.sock = sock
        self.reader = FrameReader()
        self.reader.feed(leftover)
        self.deadline = deadline
        self.check = check
        self.sid = 1

    def send(self, ftype, payload=b""):
        """Sends one frame. Safe to call from a second thread while another one recv()s."""
        view = memoryview(encode_frame(ftype, self.sid, payload))
        while view:
            self.sock.settimeout(self._slice())
            try:
                n = self.sock.send(view)
            except socket.timeout:
                if self.check is not None:
                    self.check()
                continue
            view = view[n:]

    def _slice(self):
        if self.deadline is None:
            return self.SLICE_S
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AgentTimeout("the agent did not answer in time")
        return min(self.SLICE_S, left)

    def recv(self):
        """The next frame (type, payload). Raises ProtocolError on EOF, AgentTimeout on deadline."""
        while True:
            f = self.reader.next()
            if f is not None:
                ftype, _sid, payload = f
                return ftype, payload
            self.sock.settimeout(self._slice())
            try:
                data = self.sock.recv(DATA_CHUNK + HDR_LEN)
            except socket.timeout:
                if self.check is not None:
                    self.check()
                continue
            except ConnectionResetError:
                # The peer closed with our bytes unread: the kernel reports a reset rather
                # than EOF. To the caller it is the same: the agent went away.
                data = b""
            if not data:
                if self.reader.pending():
                    raise ProtocolError("the agent closed the connection inside a frame")
                raise ProtocolError("the agent closed the connection")
            self.reader.feed(data)

    def result(self, what):
        """Waits for the answer to a request: its RESULT frame's Tlvs. An ERROR frame raises
        the agent's error; any other frame raises ProtocolError naming what."""
        ftype, data = self.recv()
        return expect(ftype, data, RESULT, what)

    def request(self, ftype, payload, what, keep=False):
        """Sends one request frame and returns result(what). The connection is closed
        afterwards, or only on a failure with keep=True (the caller goes on using it)."""
        try:
            self.send(ftype, payload)
            t = self.result(what)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return t

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def expect(ftype, payload, want, what):
    """The Tlvs of a frame that must be of type want (RESULT, STARTED): an ERROR frame raises
    the agent's error, any other type raises ProtocolError naming what."""
    if ftype == ERROR:
        _raise_error(payload)
    if ftype != want:
        raise ProtocolError("%s: expected frame type 0x%02x, got 0x%02x" % (what, want, ftype))
    return Tlvs(payload)


def _raise_error(payload):
    t = Tlvs(payload)
    raise AgentError(t.int(TAG_ERRNO, 0), t.str(TAG_MESSAGE, "agent error"))


class AgentClient:
    """Runs agent requests, one connection each.

    connect(timeout) -> (socket, leftover bytes). check(), if given, is called about twice a
    second while waiting, and may raise (e.g. when the VMM has died) to stop the wait.
    """

    def __init__(self, connect, connect_timeout=5.0, check=None):
        self._connect = connect
        self.connect_timeout = connect_timeout
        self.check = check

    def _open(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        ct = self.connect_timeout if timeout is None else min(self.connect_timeout, timeout)
        sock, rest = self._connect(ct)
        return _Conn(sock, rest, deadline, self.check)

    def _expect_result(self, c):
        ftype, payload = c.recv()
        if ftype == ERROR:
            _raise_error(payload)
        if ftype != RESULT:
            raise ProtocolError("expected RESULT, got frame type 0x%02x" % ftype)
        return Tlvs(payload)

    def ping(self, timeout=5.0):
        """{'proto_version', 'agent_version', 'uptime_ms'}."""
        c = self._open(timeout)
        try:
            c.send(PING)
            t = self._expect_result(c)
            return {"proto_version": t.int(TAG_PROTO_VERSION),
                    "agent_version": escape_text(t.str(TAG_AGENT_VERSION, "")),
                    "uptime_ms": t.int(TAG_UPTIME_MS)}
        finally:
            c.close()

    def exec(self, command, env=None, cwd=None, timeout_ms=None, user=None, stdin=b"", timeout=None,
             on_started=None, max_output_bytes=MAX_OUTPUT_BYTES):
        """Runs command; returns ExecResult. timeout_ms is the agent-side kill deadline; timeout
        (seconds) bounds the whole call here. on_started(pid) is called once the command runs.
        Raises AgentLimitError once stdout or stderr passes max_output_bytes (the connection
        closes, which ends the command)."""
        payload = exec_request(command, env, cwd, timeout_ms, user)
        c = self._open(timeout)
        out, err = bytearray(), bytearray()
        res = {"pid": None}
        writer = None
        try:
            c.send(EXEC, payload)
            if stdin:
                writer = threading.Thread(target=self._pump_stdin, args=(c, bytes(stdin)), daemon=True)
                writer.start()
            else:
                try:
                    c.send(EOF)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent closed early: what it sent before says why
            while True:
                try:
                    ftype, data = c.recv()
                except AgentTimeout as e:
                    e.partial = ExecResult(out, err, pid=res["pid"])
                    raise
                if ftype in (STDOUT, STDERR):
                    buf = out if ftype == STDOUT else err
                    if len(buf) + len(data) > max_output_bytes:
                        raise AgentLimitError("exec: the command's %s passed %d bytes (max_output_bytes)"
                                              % ("stdout" if ftype == STDOUT else "stderr",
                                                 max_output_bytes))
                    buf += data
                elif ftype == STARTED:
                    res["pid"] = Tlvs(data).int(TAG_PID)
                    if on_started:
                        on_started(res["pid"])
                elif ftype == EXIT:
                    t = Tlvs(data)
                    return ExecResult(out, err, exit_code=t.int(TAG_EXIT_CODE), signal=t.int(TAG_SIGNAL),
                                      pid=res["pid"], duration_ms=t.int(TAG_DURATION_MS),
                                      timed_out=t.int(TAG_TIMED_OUT, 0))
                elif ftype == ERROR:
                    _raise_error(data)
                else:
                    raise ProtocolError("exec: unexpected frame type 0x%02x" % ftype)
        finally:
            c.close()
            if writer is not None:
                writer.join(1)

    @staticmethod
    def _pump_stdin(c, data):
        try:
            for off in range(0, len(data), DATA_CHUNK):
                c.send(DATA, data[off : off + DATA_CHUNK])
            c.send(EOF)
        except Exception:  # noqa: BLE001 - the reading side reports what went wrong
            pass

    def read_file(self, path, timeout=None, max_bytes=MAX_FILE_BYTES):
        """The bytes of the guest file path. Raises AgentLimitError past max_bytes and
        AgentTimeout when the whole transfer takes longer than timeout seconds (None: no bound).
        The MODE the agent reports is not used: nothing here touches the host filesystem."""
        c = self._open(timeout)
        try:
            c.send(READ_FILE, tlv(TAG_PATH, path))
            meta = self._expect_result(c)
            size = meta.int(TAG_SIZE)
            if size is not None and size > max_bytes:
                raise AgentLimitError("read_file %s: the guest reports %d bytes, over max_bytes %d"
                                      % (path, size, max_bytes))
            data = bytearray()
            while True:
                ftype, chunk = c.recv()
                if ftype == DATA:
                    if len(data) + len(chunk) > max_bytes:
                        raise AgentLimitError("read_file %s: the guest sent more than max_bytes %d"
                                              % (path, max_bytes))
                    data += chunk
                elif ftype == EOF:
                    break
                elif ftype == ERROR:
                    _raise_error(chunk)
                else:
                    raise ProtocolError("read_file: unexpected frame type 0x%02x" % ftype)
            if size is not None and size != len(data) and len(data) < size:
                raise ProtocolError("read_file %s: got %d of %d bytes" % (path, len(data), size))
            return bytes(data)
        finally:
            c.close()

    def write_file(self, path, data, mode=0o644, timeout=None):
        """Writes data to the guest file path (created or truncated, mode set exactly);
        returns {'size', 'mode'}."""
        c = self._open(timeout)
        try:
            try:
                c.send(WRITE_FILE, tlv(TAG_PATH, path) + tlv(TAG_MODE, mode))
                for off in range(0, len(data), DATA_CHUNK):
                    c.send(DATA, data[off : off + DATA_CHUNK])
                c.send(EOF)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent refused early: its ERROR frame says why
            t = self._expect_result(c)
            return {"size": t.int(TAG_SIZE), "mode": t.int(TAG_MODE)}
        finally:
            c.close()

    def shutdown(self, action=POWEROFF, timeout=5.0):
        """Asks the guest to power off (or reboot); returns once the agent has accepted."""
        c = self._open(timeout)
        try:
            c.send(SHUTDOWN, tlv(TAG_ACTION, action))
            self._expect_result(c)
        finally:
            c.close()
