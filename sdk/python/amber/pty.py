"""sbx.pty: commands on a pseudo-terminal in the guest (E2B's Pty surface).

create() starts a command (an interactive /bin/sh by default) on a pty of cols x rows as a
background command: it outlives this process, and connect(pid) reattaches from anywhere with the
guest's last 1 MiB of output replayed. Output is raw terminal bytes (escape sequences included),
given to on_data and to iteration as bytes; memory here is bounded as for commands
(commands.OUTPUT_KEEP kept for the result, commands.QUEUE_KEEP queued unread).
"""

from . import commands as cmds
from . import proto
from .errors import SandboxClientError, StdinClosedError

DEFAULT_COLS, DEFAULT_ROWS = 80, 24


def _check_size(sbx, cols, rows):
    for name, v in (("cols", cols), ("rows", rows)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= proto.MAX_WINSIZE:
            raise SandboxClientError("pty %s must be an integer from 1 to %d, not %r"
                                     % (name, proto.MAX_WINSIZE, v), status=400, sandbox_id=sbx.id)
    return proto.tlv(proto.TAG_COLS, cols) + proto.tlv(proto.TAG_ROWS, rows)


class _PtyOutput(cmds._Output):
    """A command's output as bytes: the pty merges stdout and stderr into one byte stream."""

    def __init__(self, on_data, dropped=0):
        super().__init__(None, None, queue=True, dropped=dropped)
        self.on_data = on_data

    def feed(self, ftype, data):
        with self.cond:
            self.tails[proto.STDOUT].add(data)
            self.queue.append((ftype, bytes(data)))
            self.queued += len(data)
            while self.queued > cmds.QUEUE_KEEP and len(self.queue) > 1:
                _t, old = self.queue.popleft()
                self.queued -= len(old)
                self.queue_dropped += len(old)
            self.cond.notify_all()
        if self.on_data is not None and data:
            self.on_data(bytes(data))


class PtyHandle(cmds.CommandHandle):
    """A command on a pty: pid, send_input(), resize(), kill(), wait(), disconnect(), and
    iteration over its output as bytes. wait() returns a CommandResult (stdout: the terminal's
    output as text) and raises CommandExitError for a non-zero exit, as commands do."""

    def __init__(self, commands, conn, pid, on_data=None, dropped=0):
        # CommandHandle's set-up, with output kept as bytes.
        super().__init__(commands, conn, pid, out=_PtyOutput(on_data, dropped=dropped), kind="pty")

    def __iter__(self):
        """Yields the terminal's output as bytes chunks until the command ends."""
        for _ftype, data in self._queued():
            yield data

    def send_input(self, data):
        """Types data (str as UTF-8, or bytes) into the terminal. StdinClosedError once ended."""
        self.send_stdin(data)

    def resize(self, cols, rows):
        """Sets the terminal's size; the guest's foreground process group gets SIGWINCH."""
        payload = _check_size(self._sbx, cols, rows)
        with self._send_lock:
            self._check_stdin()
            try:
                self._conn.send(proto.RESIZE, payload)
            except (OSError, proto.AgentTimeout) as e:
                raise StdinClosedError("sandbox %s: pty %d: resize: %s" % (self._sbx.id, self.pid, e),
                                       self._sbx.id) from None

    def __repr__(self):
        return "PtyHandle(pid=%r)" % self.pid


class Pty:
    """sbx.pty: create(), connect(), send_input(), resize(), kill()."""

    def __init__(self, sbx):
        self._sbx = sbx
        self._commands = cmds.Commands(sbx)

    def create(self, cols=DEFAULT_COLS, rows=DEFAULT_ROWS, cmd="/bin/sh", on_data=None, env=None,
               cwd=None, user=None, timeout=None, envs=None):
        """Starts cmd (a shell string or an argument list; default an interactive /bin/sh) on a
        cols x rows pty; returns a PtyHandle at once. TERM defaults to xterm-256color. timeout
        (seconds, default None) kills its process group in the guest; <= 0 is refused."""
        sbx = self._sbx
        size = _check_size(sbx, cols, rows)
        timeout = cmds._check_timeout(sbx, timeout)
        env = dict({"TERM": "xterm-256color"}, **dict(sbx.config.get("envs") or {},
                                                       **dict(envs or {}, **(env or {}))))
        if isinstance(cmd, str) and cmd == "/bin/sh":
            cmd = ["/bin/sh"]  # an argument list: sh -c would not be interactive
        try:
            payload = proto.exec_request(cmd, env, cwd, None if timeout is None else max(1, int(timeout * 1000)),
                                         user, background=True) + size
        except ValueError as e:
            raise SandboxClientError("sandbox %s: pty.create: %s" % (sbx.id, e), status=400,
                                     sandbox_id=sbx.id) from None
        sbx._refuse_if_paused("pty.create()")

        def start():
            c, pid = self._commands._start(proto.PTY, payload, "pty")
            return PtyHandle(self._commands, c, pid, on_data)

        return sbx._guest_call("pty.create", start)

    def connect(self, pid, on_data=None):
        """Reattaches to pty command pid (the guest's last 1 MiB of output comes first).
        Raises CommandNotFoundError."""
        pid = self._commands._check_pid(pid)
        sbx = self._sbx

        def attach():
            c, dropped = self._commands._attach(pid)
            return PtyHandle(self._commands, c, pid, on_data, dropped=dropped)

        sbx._refuse_if_paused("pty.connect()")
        return self._commands._call("pty.connect(%d)" % pid, attach, pid)

    def send_input(self, pid, data):
        """Types data into pty pid's terminal from any process (attaches briefly)."""
        self._commands.send_stdin(pid, data)

    def resize(self, pid, cols, rows):
        """Sets pty pid's size from any process. CommandNotFoundError if there is no such pid;
        SandboxClientError (400) if it is not a pty or the size is out of range."""
        pid = self._commands._check_pid(pid)
        payload = proto.tlv(proto.TAG_PID, pid) + _check_size(self._sbx, cols, rows)

        def resize():
            self._commands._open(self._sbx._scaled_s(10.0)).request(proto.RESIZE, payload, "resize")

        self._sbx._refuse_if_paused("pty.resize()")
        return self._commands._call("pty.resize(%d)" % pid, resize, pid)

    def kill(self, pid, signal=9):
        """Signals pty pid's process group: True if it was running, False if it had ended."""
        return self._commands.kill(pid, signal)

