"""PTY and RESIZE checks for tests/agent/test_agent_host.sh: the raw protocol against a running
amber-agent on a Unix socket. Prints "ok - NAME" / "FAIL - NAME: why" lines, then "pty: P F".
usage: pty_host.py SOCKET"""
import errno
import os
import socket
import struct
import sys
import time

import rawpeer

PTY, KILL, EXEC, RESIZE = 0x0E, 0x07, 0x02, 0x12
DATA, EOF, RESULT, STDOUT, EXIT, STARTED, ERROR = 0x10, 0x11, 0x20, 0x21, 0x23, 0x24, 0x7F
T_ARGV, T_SHELL, T_PID, T_BACKGROUND, T_COLS, T_ROWS, T_ERRNO, T_EXIT = 1, 2, 24, 25, 34, 35, 32, 19
results = {"ok": 0, "fail": 0}


def check(name, cond, detail=""):
    results["ok" if cond else "fail"] += 1
    print(("ok   - %s" % name) if cond else ("FAIL - %s: %s" % (name, detail)))


def tlv(tag, v):
    if isinstance(v, int):
        v = v.to_bytes(8, "big")
    elif isinstance(v, str):
        v = v.encode()
    return struct.pack(">HI", tag, len(v)) + v


def frame(t, payload=b"", sid=1):
    return struct.pack(rawpeer.HDR, len(payload), t, sid) + payload


def tlvs(payload):
    out, off = {}, 0
    while off + 6 <= len(payload):
        tag, n = struct.unpack_from(">HI", payload, off)
        out[tag] = payload[off + 6:off + 6 + n]
        off += 6 + n
    return out


def u64(payload, tag):
    v = tlvs(payload).get(tag)
    return int.from_bytes(v, "big") if v is not None else None


class Peer:
    def __init__(self, path):
        self.s = rawpeer.connect(path)
        self.s.settimeout(5)
        self.buf = b""

    def send(self, t, payload=b""):
        self.s.sendall(frame(t, payload))

    def next(self):
        """(type, payload), or None at EOF or after a timeout (then timed_out is set)."""
        self.timed_out = False
        while True:
            if len(self.buf) >= rawpeer.HDR_LEN:
                n, t, _ = struct.unpack(rawpeer.HDR, self.buf[:rawpeer.HDR_LEN])
                if len(self.buf) >= rawpeer.HDR_LEN + n:
                    p = self.buf[rawpeer.HDR_LEN:rawpeer.HDR_LEN + n]
                    self.buf = self.buf[rawpeer.HDR_LEN + n:]
                    return t, p
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                self.timed_out = True
                return None
            if not d:
                return None
            self.buf += d

    def output_until(self, needle, limit_s=5):
        """Collect STDOUT until needle appears (or EXIT/ERROR/EOF); returns (text, last frame)."""
        out, end = b"", time.monotonic() + limit_s
        while needle.encode() not in out and time.monotonic() < end:
            f = self.next()
            if f is None or f[0] != STDOUT:
                return out.decode("utf-8", "replace"), f
            out += f[1]
        return out.decode("utf-8", "replace"), None

    def close(self):
        self.s.close()


def pty_req(cmd, cols=80, rows=24, extra=b""):
    return tlv(T_SHELL, cmd) + tlv(T_COLS, cols) + tlv(T_ROWS, rows) + extra


def first_reply(path, data):
    p = Peer(path)
    p.s.sendall(data)
    f = p.next()
    p.close()
    return f


def main(path):
    # A command on a pty sees a terminal of the size asked for.
    p = Peer(path)
    p.send(PTY, pty_req("test -t 0 && test -t 1 && test -t 2 && echo TTY; stty size", 100, 30))
    f = p.next()
    check("pty: STARTED first", f and f[0] == STARTED, f)
    out, last = p.output_until("\n30 100")
    check("pty: stdin, stdout and stderr are a terminal", "TTY" in out, repr(out))
    check("pty: stty size is the requested 30 100", "30 100" in out, repr(out))
    while last is None or last[0] == STDOUT:
        last = p.next()
    check("pty: EXIT 0 at the end", last and last[0] == EXIT and u64(last[1], T_EXIT) == 0, last)
    p.close()

    # Input is echoed by the terminal and read by the command; RESIZE changes the size and
    # delivers SIGWINCH to the foreground process group.
    p = Peer(path)
    p.send(PTY, pty_req("trap 'echo WINCH' WINCH; echo ready; while ! read line; do :; done; echo got=$line; stty size", 80, 24))
    p.next()
    out, _ = p.output_until("ready")
    p.send(RESIZE, tlv(T_COLS, 132) + tlv(T_ROWS, 43))
    time.sleep(0.3)
    p.send(DATA, b"hello\r")
    out, last = p.output_until("\n43 132")
    check("pty: input is echoed by the terminal", "hello" in out.split("got=")[0], repr(out))
    check("pty: input reaches the command (CR becomes NL)", "got=hello" in out, repr(out))
    check("pty: RESIZE changes the size (stty size 43 132)", "43 132" in out, repr(out))
    check("pty: RESIZE sends SIGWINCH", "WINCH" in out, repr(out))
    p.close()

    # USER: the command's terminal belongs to that user; TERM is xterm by default.
    p = Peer(path)
    p.send(PTY, pty_req("stat -c owner=%U $(readlink /proc/self/fd/0); echo TERM=$TERM") + tlv(6, "nobody"))
    p.next()
    out, _ = p.output_until("TERM=xterm")
    check("pty: with USER nobody the pty slave is nobody's", "owner=nobody" in out, repr(out))
    check("pty: TERM is xterm unless ENV says otherwise", "TERM=xterm\r" in out, repr(out))
    p.close()

    # ^D through the terminal is end of input for cat; the exit code comes back.
    p = Peer(path)
    p.send(PTY, pty_req("cat; exit 3"))
    p.next()
    p.send(DATA, b"abc\n\x04")
    f = p.next()
    while f and f[0] == STDOUT:
        f = p.next()
    check("pty: ^D ends cat, EXIT_CODE 3 comes back", f and f[0] == EXIT and u64(f[1], T_EXIT) == 3, f)
    p.close()

    # Hostile PTY requests: each gets ERROR, nothing runs.
    bad = {
        "COLS 0": tlv(T_SHELL, "true") + tlv(T_COLS, 0) + tlv(T_ROWS, 24),
        "ROWS 4097": tlv(T_SHELL, "true") + tlv(T_COLS, 80) + tlv(T_ROWS, 4097),
        "ROWS 2^64-1": tlv(T_SHELL, "true") + tlv(T_COLS, 80) + tlv(T_ROWS, (1 << 64) - 1),
        "ROWS missing": tlv(T_SHELL, "true") + tlv(T_COLS, 80),
        "COLS twice": tlv(T_SHELL, "true") + tlv(T_COLS, 80) + tlv(T_COLS, 81) + tlv(T_ROWS, 24),
        "COLS of 4 bytes": tlv(T_SHELL, "true") + tlv(T_COLS, b"\0\0\0\x50") + tlv(T_ROWS, 24),
        "no command": tlv(T_COLS, 80) + tlv(T_ROWS, 24),
    }
    for name, payload in bad.items():
        f = first_reply(path, frame(PTY, payload))
        check("pty: hostile request (%s) gets ERROR" % name, f and f[0] == ERROR, f)

    # A bad RESIZE mid-session: ERROR, and the command's process group is killed.
    pidfile = "/tmp/amber-pty-test-%d.pid" % time.monotonic_ns()
    p = Peer(path)
    p.send(PTY, pty_req("echo $$ > %s; exec sleep 1000" % pidfile))
    p.next()
    time.sleep(0.3)
    p.send(RESIZE, tlv(T_COLS, 0) + tlv(T_ROWS, 24))
    f = p.next()
    while f and f[0] == STDOUT:
        f = p.next()
    check("pty: RESIZE with COLS 0 mid-session gets ERROR EINVAL",
          f and f[0] == ERROR and u64(f[1], T_ERRNO) == errno.EINVAL, f)
    p.close()
    time.sleep(0.3)
    pid, alive = None, False
    try:
        with open(pidfile) as pf:
            pid = int(pf.read())
        os.unlink(pidfile)
        with open("/proc/%d/stat" % pid) as st:
            alive = st.read().split(")")[1].split()[0] != "Z"
    except (FileNotFoundError, ValueError):
        pass
    check("pty: the command of a bad session is killed", pid is not None and not alive,
          "pid %s alive" % pid if pid else "the command never wrote its pid")

    # RESIZE inside a plain exec is a protocol error.
    p = Peer(path)
    p.send(EXEC, tlv(T_SHELL, "sleep 5"))
    p.next()
    p.send(RESIZE, tlv(T_COLS, 80) + tlv(T_ROWS, 24))
    f = p.next()
    check("exec: RESIZE frame in a plain exec gets ERROR EPROTO",
          f and f[0] == ERROR and u64(f[1], T_ERRNO) == errno.EPROTO, f)
    p.close()

    # RESIZE as a request: by pid, for a background pty; unknown pid, no pid, not a pty.
    f = first_reply(path, frame(RESIZE, tlv(T_PID, 4000000) + tlv(T_COLS, 80) + tlv(T_ROWS, 24)))
    check("resize: unknown pid gets ERROR ESRCH", f and f[0] == ERROR and u64(f[1], T_ERRNO) == errno.ESRCH, f)
    f = first_reply(path, frame(RESIZE, tlv(T_COLS, 80) + tlv(T_ROWS, 24)))
    check("resize: no PID gets ERROR EINVAL", f and f[0] == ERROR and u64(f[1], T_ERRNO) == errno.EINVAL, f)
    bg = Peer(path)
    bg.send(EXEC, tlv(T_SHELL, "sleep 30") + tlv(T_BACKGROUND, 1))
    f = bg.next()
    bgpid = u64(f[1], T_PID) if f and f[0] == STARTED else None
    f = first_reply(path, frame(RESIZE, tlv(T_PID, bgpid or 1) + tlv(T_COLS, 80) + tlv(T_ROWS, 24)))
    check("resize: a background command without a pty gets ERROR ENOTTY",
          f and f[0] == ERROR and u64(f[1], T_ERRNO) == errno.ENOTTY, f)
    first_reply(path, frame(KILL, tlv(T_PID, bgpid or 1)))
    bg.close()

    # A background pty: resized by pid from another connection, reattachable.
    bg = Peer(path)
    bg.send(PTY, pty_req("echo ready; read x; stty size; read y", 80, 24, tlv(T_BACKGROUND, 1)))
    f = bg.next()
    bgpid = u64(f[1], T_PID) if f and f[0] == STARTED else None
    check("background pty: STARTED with a pid", bgpid is not None, f)
    bg.output_until("ready")
    f = first_reply(path, frame(RESIZE, tlv(T_PID, bgpid or 1) + tlv(T_COLS, 90) + tlv(T_ROWS, 33)))
    check("background pty: RESIZE by pid gets RESULT", f and f[0] == RESULT, f)
    f = first_reply(path, frame(RESIZE, tlv(T_PID, bgpid or 1) + tlv(T_COLS, 5000) + tlv(T_ROWS, 33)))
    check("background pty: RESIZE by pid with COLS 5000 gets ERROR", f and f[0] == ERROR, f)
    bg.send(DATA, b"\r")
    out, _ = bg.output_until("33 90")
    check("background pty: the size set by pid shows in stty size", "33 90" in out, repr(out))
    bg.send(RESIZE, tlv(T_COLS, 70) + tlv(T_ROWS, 20))
    bg.send(DATA, b"\r")
    f = bg.next()
    while f and f[0] == STDOUT:
        f = bg.next()
    check("background pty: in-session RESIZE then input: EXIT", f and f[0] == EXIT, f)
    bg.close()

    print("pty: %d %d" % (results["ok"], results["fail"]))


if __name__ == "__main__":
    main(sys.argv[1])
