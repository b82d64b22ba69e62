"""sbx.commands: streaming and background commands in the guest (E2B's Commands surface).

run() streams a command's output to callbacks as it arrives; run(background=True) returns a
CommandHandle whose command outlives this process: the guest agent keeps the last 1 MiB of its
output, and connect(pid) reattaches from any process. Memory here is bounded too: a result keeps
at most OUTPUT_KEEP bytes of each stream (the tail), and a handle's iterator queue at most
QUEUE_KEEP bytes, however much the guest prints.
"""
import codecs
import collections
import errno as errno_
import threading
import time

from . import proto
from .errors import (CommandExitError, CommandNotFoundError, SandboxClientError, SandboxError,
                     SandboxTimeoutError, StdinClosedError)

OUTPUT_KEEP = 8 * 1024 * 1024  # bytes of each stream a CommandResult keeps (the tail)
QUEUE_KEEP = 4 * 1024 * 1024  # bytes of output a handle's iterator may hold unread
DEFAULT_TIMEOUT_S = 60.0  # run() in the foreground, as E2B


class CommandResult(proto.ExecResult):
    """An ended command: stdout, stderr (str), exit_code, and the raw bytes. stdout_dropped and
    stderr_dropped count leading bytes not kept (past OUTPUT_KEEP, or before the guest's
    retained tail on a reattach). error is a message when the command did not exit cleanly."""

    def __init__(self, stdout=b"", stderr=b"", exit_code=None, signal=None, pid=None,
                 duration_ms=None, timed_out=False, stdout_dropped=0, stderr_dropped=0):
        super().__init__(stdout, stderr, exit_code, signal, pid, duration_ms, timed_out)
        self.stdout_dropped = stdout_dropped
        self.stderr_dropped = stderr_dropped

    @property
    def error(self):
        if self.timed_out:
            return "timed out"
        if self.signal:
            return "killed by signal %d" % self.signal
        if self.returncode:
            return "exit status %d" % self.returncode
        return None


class ProcessInfo:
    """One background command from commands.list(): pid, cmd (the shell string or the joined
    arguments), args (the argument list, [] for a shell string), cwd, running, exit_code."""

    def __init__(self, pid, cmd, args, cwd, exit_code):
        self.pid, self.cmd, self.args, self.cwd, self.exit_code = pid, cmd, args, cwd, exit_code

    @property
    def running(self):
        return self.exit_code is None

    def __repr__(self):
        return "ProcessInfo(pid=%r, cmd=%r, running=%r)" % (self.pid, self.cmd, self.running)


class _Tail:
    """The last `limit` bytes of a stream and how many came before them."""

    def __init__(self, limit, dropped=0):
        self.limit, self.buf, self.dropped = limit, bytearray(), dropped

    def add(self, data):
        self.buf += data
        cut = len(self.buf) - self.limit
        if cut > 0:
            del self.buf[:cut]  # bytearray drops a prefix without copying the rest
            self.dropped += cut


class _Output:
    """Where a command's output goes: bounded tails, callbacks, and (for a handle) a bounded
    queue for iteration. Thread-safe: a handle's reader thread feeds, callers read."""

    def __init__(self, on_stdout, on_stderr, queue=False, dropped=0):
        self.tails = {proto.STDOUT: _Tail(OUTPUT_KEEP, dropped), proto.STDERR: _Tail(OUTPUT_KEEP)}
        self.decoders = {t: codecs.getincrementaldecoder("utf-8")("replace") for t in self.tails}
        self.callbacks = {proto.STDOUT: on_stdout, proto.STDERR: on_stderr}
        self.queue = collections.deque() if queue else None
        self.queued = 0
        self.queue_dropped = 0
        self.cond = threading.Condition()
        self.exit = None  # the EXIT frame's Tlvs
        self.failure = None  # an exception that ended the stream without EXIT
        self.done = False

    def feed(self, ftype, data):
        text = self.decoders[ftype].decode(data)
        with self.cond:
            self.tails[ftype].add(data)
            if self.queue is not None and text:
                self.queue.append((ftype, text))
                self.queued += len(text)
                while self.queued > QUEUE_KEEP and len(self.queue) > 1:
                    _t, old = self.queue.popleft()
                    self.queued -= len(old)
                    self.queue_dropped += len(old)
                self.cond.notify_all()
        cb = self.callbacks[ftype]
        if cb is not None and text:
            cb(text)

    def finish(self, exit_tlvs=None, failure=None):
        with self.cond:
            self.exit, self.failure, self.done = exit_tlvs, failure, True
            self.cond.notify_all()

    def result(self, pid):
        t = self.exit
        with self.cond:
            out, err = self.tails[proto.STDOUT], self.tails[proto.STDERR]
            return CommandResult(bytes(out.buf), bytes(err.buf),
                                 exit_code=t.int(proto.TAG_EXIT_CODE) if t else None,
                                 signal=t.int(proto.TAG_SIGNAL) if t else None, pid=pid,
                                 duration_ms=t.int(proto.TAG_DURATION_MS) if t else None,
                                 timed_out=t.int(proto.TAG_TIMED_OUT, 0) if t else False,
                                 stdout_dropped=out.dropped, stderr_dropped=err.dropped)


def _check_timeout(sbx, timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise SandboxClientError("timeout must be a positive number of seconds (or None for no "
                                 "limit), not %r" % (timeout,), status=400, sandbox_id=sbx.id)
    return float(timeout)


def _exit_error(sbx, what, res):
    return CommandExitError("sandbox %s: %s: %s" % (sbx.id, what, res.error), sbx.id, result=res)


class CommandHandle:
    """A background command: pid, wait(), kill(), send_stdin(), close_stdin(), disconnect(), and
    iteration over its output as (stdout, stderr) pairs, one of them None. A reader thread drains
    the connection, so an unread handle never stalls the command."""

    def __init__(self, commands, conn, pid, on_stdout=None, on_stderr=None, dropped=0, out=None,
                 kind="cmd"):
        self._commands = commands
        self._sbx = commands._sbx
        self._conn = conn
        self.pid = pid
        self._out = out or _Output(on_stdout, on_stderr, queue=True, dropped=dropped)
        self._stdin_closed = False
        self._detached = False
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="amber-%s-%d" % (kind, pid), daemon=True)
        self._thread.start()

    def _read(self):
        exit_tlvs, failure = None, None
        try:
            while True:
                ftype, data = self._conn.recv()
                if ftype in (proto.STDOUT, proto.STDERR):
                    try:
                        self._out.feed(ftype, data)
                    except Exception as e:  # noqa: BLE001 - a callback's error ends the wait
                        failure = e
                        break
                elif ftype == proto.EXIT:
                    exit_tlvs = proto.Tlvs(data)
                    break
                elif ftype == proto.ERROR:
                    t = proto.Tlvs(data)
                    failure = proto.AgentError(t.int(proto.TAG_ERRNO, 0), t.str(proto.TAG_MESSAGE, "error"))
                    break
                else:
                    failure = proto.ProtocolError("background command: unexpected frame 0x%02x" % ftype)
                    break
        except Exception as e:  # noqa: BLE001 - reported by wait()
            failure = e
        finally:
            self._conn.close()
            self._out.finish(exit_tlvs, None if self._detached else failure)

    # ---------------------------------------------------------------- output
    @property
    def stdout(self):
        """The output kept so far (the last OUTPUT_KEEP bytes), as text."""
        return self._out.result(self.pid).stdout

    @property
    def stderr(self):
        return self._out.result(self.pid).stderr

    @property
    def exit_code(self):
        """The exit code once the command has ended (negative: killed by that signal), else None."""
        return self._out.result(self.pid).exit_code if self._out.exit else None

    def _queued(self):
        """Yields (frame type, data) from the output queue as it arrives, until the command ends."""
        o = self._out
        while True:
            with o.cond:
                while not o.queue and not o.done:
                    o.cond.wait(0.5)
                if not o.queue:
                    return
                ftype, data = o.queue.popleft()
                o.queued -= len(data)
            yield ftype, data

    def __iter__(self):
        """Yields (stdout_text, None) or (None, stderr_text) as output arrives, until it ends."""
        for ftype, text in self._queued():
            yield (text, None) if ftype == proto.STDOUT else (None, text)

    def wait(self, timeout=None):
        """Waits for the command to end; returns its CommandResult. Raises CommandExitError if it
        exited non-zero or was killed, SandboxTimeoutError if timeout (seconds) passes first
        (the command keeps running), and the connection's error if it broke."""
        timeout = _check_timeout(self._sbx, timeout)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SandboxTimeoutError("sandbox %s: command %d still running after %g s"
                                      % (self._sbx.id, self.pid, timeout), self._sbx.id,
                                      result=self._out.result(self.pid))
        o = self._out
        if o.exit is None:
            if self._detached:
                raise SandboxClientError("command %d: this handle was disconnected" % self.pid,
                                         status=409, sandbox_id=self._sbx.id)
            if isinstance(o.failure, SandboxError) or not isinstance(
                    o.failure, (proto.AgentError, proto.ProtocolError, OSError, proto.AgentTimeout)):
                raise o.failure
            self._sbx._guest_call("command %d" % self.pid, lambda: _reraise(o.failure))
        res = o.result(self.pid)
        if res.returncode != 0:
            raise _exit_error(self._sbx, "command %d" % self.pid, res)
        return res

    # ---------------------------------------------------------------- control
    def kill(self, signal=9):
        """Signals the command's process group (SIGKILL by default). True if it was running,
        False if it had already ended."""
        return self._commands.kill(self.pid, signal)

    def send_stdin(self, data):
        """Writes data (str as UTF-8, or bytes) to the command's stdin. Raises StdinClosedError
        after close_stdin(), or once the command has ended."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        data = bytes(data)
        with self._send_lock:
            self._check_stdin()
            try:
                for off in range(0, len(data), proto.DATA_CHUNK):
                    self._conn.send(proto.DATA, data[off:off + proto.DATA_CHUNK])
            except (OSError, proto.AgentTimeout) as e:
                raise StdinClosedError("sandbox %s: command %d: stdin: %s" % (self._sbx.id, self.pid, e),
                                       self._sbx.id) from None

    def close_stdin(self):
        """Sends end-of-file to the command's stdin (for every client: stdin is the command's)."""
        with self._send_lock:
            self._check_stdin()
            try:
                self._conn.send(proto.EOF)
            except (OSError, proto.AgentTimeout):
                pass
            self._stdin_closed = True

    def _check_stdin(self):
        if self._stdin_closed:
            raise StdinClosedError("sandbox %s: command %d: stdin is closed" % (self._sbx.id, self.pid),
                                   self._sbx.id)
        if self._out.done:
            raise StdinClosedError("sandbox %s: command %d has ended (or this handle was disconnected): "
                                   "stdin is closed" % (self._sbx.id, self.pid), self._sbx.id)

    def disconnect(self):
        """Stops receiving output here; the command keeps running (connect(pid) reattaches)."""
        self._detached = True
        try:
            self._conn.sock.shutdown(2)
        except OSError:
            pass
        self._thread.join(5)

    def __repr__(self):
        return "CommandHandle(pid=%r)" % self.pid


def _reraise(e):
    raise e


class Commands:
    """sbx.commands: run(), list(), connect(), kill(), send_stdin()."""

    def __init__(self, sbx):
        self._sbx = sbx

    def _call(self, what, fn, pid=None):
        """fn() with agent errors mapped: ESRCH -> CommandNotFoundError, the rest as execute()."""
        sbx = self._sbx

        def inner():
            try:
                return fn()
            except proto.AgentError as e:
                if e.errno == errno_.ESRCH:
                    raise CommandNotFoundError("sandbox %s: no background command with pid %s"
                                               % (sbx.id, pid), sbx.id, pid=pid) from None
                raise
        return sbx._guest_call(what, inner)

    def _open(self, timeout=None):
        return self._sbx._agent()._open(timeout)

    def run(self, cmd, background=False, env=None, cwd=None, user=None, timeout=DEFAULT_TIMEOUT_S,
            on_stdout=None, on_stderr=None, stdin=None, envs=None):
        """Runs cmd (a shell string, or a list of arguments) in the guest.

        In the foreground, streams output to on_stdout/on_stderr (str chunks) as it arrives and
        returns a CommandResult; raises CommandExitError on a non-zero exit and
        SandboxTimeoutError (with .result) when timeout seconds pass (the guest kills the
        command's process group). timeout=None: no limit; timeout <= 0 is refused.
        With background=True returns a CommandHandle at once; timeout (default None there) still
        kills the command in the guest. env (or E2B's envs) adds environment variables.
        """
        sbx = self._sbx
        if background and timeout == DEFAULT_TIMEOUT_S:
            timeout = None
        timeout = _check_timeout(sbx, timeout)
        env = dict(sbx.config.get("envs") or {}, **dict(envs or {}, **(env or {})))
        sbx._refuse_if_paused("commands.run()")
        timeout_ms = None if timeout is None else max(1, int(timeout * 1000))
        try:
            payload = proto.exec_request(cmd, env, cwd, timeout_ms, user, background=background)
        except ValueError as e:
            raise SandboxClientError("sandbox %s: commands.run: %s" % (sbx.id, e), status=400,
                                     sandbox_id=sbx.id) from None
        if background:
            return sbx._guest_call("commands.run", lambda: self._start_background(
                payload, stdin, on_stdout, on_stderr))
        call_timeout = None if timeout is None else timeout + sbx._scaled_s(10.0)
        out = _Output(on_stdout, on_stderr)
        pid = {"pid": None}
        try:
            sbx._guest_call("commands.run", lambda: self._run_fg(payload, stdin, out, pid, call_timeout))
        except SandboxTimeoutError as e:
            e.result = out.result(pid["pid"])
            raise
        res = out.result(pid["pid"])
        if res.timed_out:
            raise SandboxTimeoutError("sandbox %s: command timed out after %g s" % (sbx.id, timeout),
                                      sbx.id, result=res)
        if res.returncode != 0:
            raise _exit_error(sbx, "commands.run", res)
        return res

    def _run_fg(self, payload, stdin, out, pid, call_timeout):
        c = self._open(call_timeout)
        writer = None
        try:
            c.send(proto.EXEC, payload)
            data = stdin.encode() if isinstance(stdin, str) else bytes(stdin or b"")
            if data:
                writer = threading.Thread(target=proto.AgentClient._pump_stdin, args=(c, data), daemon=True)
                writer.start()
            else:
                try:
                    c.send(proto.EOF)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent closed early: what it sent says why
            while True:
                ftype, data = c.recv()
                if ftype in (proto.STDOUT, proto.STDERR):
                    out.feed(ftype, data)
                elif ftype == proto.STARTED:
                    pid["pid"] = proto.Tlvs(data).int(proto.TAG_PID)
                elif ftype == proto.EXIT:
                    out.finish(proto.Tlvs(data))
                    return
                elif ftype == proto.ERROR:
                    proto._raise_error(data)
                else:
                    raise proto.ProtocolError("exec: unexpected frame type 0x%02x" % ftype)
        finally:
            c.close()  # before EXIT this kills the command (foreground semantics)
            if writer is not None:
                writer.join(1)

    def _start(self, ftype, payload, what):
        """Sends a background request (EXEC or PTY) on a new connection and waits for STARTED.
        Returns (connection, pid); the connection is closed on any failure."""
        c = self._open(None)
        try:
            c.deadline = time.monotonic() + self._sbx._scaled_s(10.0)
            c.send(ftype, payload)
            rtype, data = c.recv()
            pid = proto.expect(rtype, data, proto.STARTED, what).int(proto.TAG_PID)
            c.deadline = None
        except BaseException:
            c.close()
            raise
        return c, pid

    def _start_background(self, payload, stdin, on_stdout, on_stderr):
        c, pid = self._start(proto.EXEC, payload, "exec")
        h = CommandHandle(self, c, pid, on_stdout, on_stderr)
        if stdin:
            h.send_stdin(stdin)
        return h

    def connect(self, pid, on_stdout=None, on_stderr=None):
        """Reattaches to background command pid (also one started by another process): returns a
        CommandHandle whose output begins with what the guest kept (the last 1 MiB; the handle's
        result counts what came before in stdout_dropped). Raises CommandNotFoundError."""
        pid = self._check_pid(pid)

        def attach():
            c, dropped = self._attach(pid)
            return CommandHandle(self, c, pid, on_stdout, on_stderr, dropped=dropped)

        self._sbx._refuse_if_paused("commands.connect()")
        return self._call("commands.connect(%d)" % pid, attach, pid)

    def _attach(self, pid):
        """ATTACH to command pid on a new connection: (connection, bytes the guest dropped before
        what it kept). Raises the agent's error; the connection is closed on any failure."""
        c = self._open(None)
        c.deadline = time.monotonic() + self._sbx._scaled_s(10.0)
        t = c.request(proto.ATTACH, proto.tlv(proto.TAG_PID, pid), "attach", keep=True)
        c.deadline = None
        return c, t.int(proto.TAG_DROPPED, 0)

    def kill(self, pid, signal=9):
        """Signals background command pid's process group. True if it was running, False if it
        had already ended; CommandNotFoundError if there is no such command."""
        pid = self._check_pid(pid)
        if isinstance(signal, bool) or not isinstance(signal, int) or not 1 <= signal <= 64:
            raise SandboxClientError("signal must be 1..64, not %r" % (signal,), status=400,
                                     sandbox_id=self._sbx.id)

        def kill():
            c = self._open(self._sbx._scaled_s(10.0))
            t = c.request(proto.KILL, proto.tlv(proto.TAG_PID, pid) + proto.tlv(proto.TAG_SIGNAL, signal), "kill")
            return t.raw(proto.TAG_EXIT_CODE) is None and t.raw(proto.TAG_SIGNAL) is None

        self._sbx._refuse_if_paused("commands.kill()")
        return self._call("commands.kill(%d)" % pid, kill, pid)

    def send_stdin(self, pid, data):
        """Writes data to background command pid's stdin from any process (attaches briefly)."""
        h = self.connect(pid)
        try:
            h.send_stdin(data)
        finally:
            h.disconnect()

    def list(self, include_exited=False):
        """The background commands in the guest, as ProcessInfo (running ones only, unless
        include_exited: an ended command stays listed until its exit was received, or 60 s)."""

        def lst():
            c = self._open(self._sbx._scaled_s(10.0))
            out = []
            try:
                c.send(proto.LIST_PROCS)
                while True:
                    ftype, data = c.recv()
                    if ftype == proto.EOF:
                        return out
                    if ftype == proto.ERROR:
                        proto._raise_error(data)
                    if ftype != proto.ENTRY:
                        raise proto.ProtocolError("list: unexpected frame type 0x%02x" % ftype)
                    if len(out) >= 4096:
                        raise proto.ProtocolError("list: more than 4096 entries")
                    t = proto.Tlvs(data)
                    args = [a.decode("utf-8", "replace") for a in t.all(proto.TAG_ARGV)]
                    shell = t.str(proto.TAG_SHELL)
                    sig = t.int(proto.TAG_SIGNAL)
                    code = -sig if sig else t.int(proto.TAG_EXIT_CODE)
                    out.append(ProcessInfo(t.int(proto.TAG_PID), shell if shell is not None else " ".join(args),
                                           args, t.str(proto.TAG_CWD), code))
            finally:
                c.close()

        self._sbx._refuse_if_paused("commands.list()")
        procs = self._call("commands.list", lst)
        procs.sort(key=lambda p: p.pid or 0)
        return procs if include_exited else [p for p in procs if p.running]

    def _check_pid(self, pid):
        if isinstance(pid, bool) or not isinstance(pid, int) or not 1 <= pid <= 1 << 22:
            raise SandboxClientError("pid must be an integer from 1 to %d, not %r" % (1 << 22, pid),
                                     status=400, sandbox_id=self._sbx.id)
        return pid
