"""WATCH checks for tests/agent/test_agent_host.sh: inotify events streamed by a running
amber-agent on a Unix socket, and hostile watch requests. Prints "ok - NAME" / "FAIL - NAME: why"
lines, then "watch: P F".  usage: watch_host.py SOCKET TMPDIR"""
import errno
import os
import shutil
import socket
import sys
import time

from pty_host import DATA, EOF, ERROR, RESULT, T_ERRNO, Peer, first_reply, frame, tlv, tlvs, u64

WATCH, ENTRY = 0x0F, 0x25
T_PATH, T_TYPE, T_RECURSIVE, T_EVENT = 7, 27, 36, 37
NAMES = {1: "create", 2: "write", 3: "remove", 4: "rename", 5: "chmod", 6: "overflow"}
results = {"ok": 0, "fail": 0}


def check(name, cond, detail=""):
    results["ok" if cond else "fail"] += 1
    print(("ok   - %s" % name) if cond else ("FAIL - %s: %s" % (name, detail)), flush=True)


def start(path, d, recursive=None):
    p = Peer(path)
    req = tlv(T_PATH, d) + (tlv(T_RECURSIVE, recursive) if recursive is not None else b"")
    p.send(WATCH, req)
    return p, p.next()


def events(p, quiet_s=0.5, limit_s=5):
    """(event name, path) of the ENTRY frames until quiet_s of silence; ends at EOF/ERROR too."""
    out, end = [], time.monotonic() + limit_s
    p.s.settimeout(quiet_s)
    while time.monotonic() < end:
        f = p.next()
        if f is None and p.timed_out:
            break
        if f is None or f[0] != ENTRY:
            out.append(("END", f and f[0]))
            break
        t = tlvs(f[1])
        out.append((NAMES.get(u64(f[1], T_EVENT), "?"), t.get(T_PATH, b"").decode()))
    p.s.settimeout(5)
    return out


def main(sock, tmp):
    d = os.path.join(tmp, "watched")
    os.makedirs(d)
    p, f = start(sock, d)
    check("watch: RESULT once the watch is set", f and f[0] == RESULT, f)
    with open(os.path.join(d, "a"), "w") as fh:
        fh.write("x")
    for _ in range(1000):
        with open(os.path.join(d, "a"), "a") as fh:
            fh.write("y")
    os.chmod(os.path.join(d, "a"), 0o600)
    os.rename(os.path.join(d, "a"), os.path.join(d, "b"))
    os.unlink(os.path.join(d, "b"))
    os.mkdir(os.path.join(d, "sub"))
    time.sleep(0.2)
    open(os.path.join(d, "sub", "deep"), "w").close()
    ev = events(p)
    a, b, sub = (os.path.join(d, n) for n in ("a", "b", "sub"))
    want = [("create", a), ("write", a), ("chmod", a), ("rename", a), ("create", b), ("remove", b),
            ("create", sub)]
    check("watch: create, write, chmod, rename (old, then new), remove, mkdir in order",
          ev == want, ev)
    check("watch: 1001 writes to one file are one write event",
          [e for e in ev if e[0] == "write"] == [("write", a)], ev)
    check("watch: not recursive: nothing from inside sub/", all("deep" not in e[1] for e in ev), ev)
    p.send(EOF)
    f = p.next()
    check("watch: the client's EOF is answered with EOF", f and f[0] == EOF, f)
    p.close()

    # Recursive: a directory made after the start is watched too; its removal ends the watch.
    r = os.path.join(tmp, "rec")
    os.makedirs(os.path.join(r, "old"))
    p, f = start(sock, r, recursive=1)
    check("watch recursive: RESULT counts the 2 directories watched",
          f and f[0] == RESULT and u64(f[1], 23) == 2, f)
    open(os.path.join(r, "old", "x"), "w").close()
    os.mkdir(os.path.join(r, "new"))
    time.sleep(0.3)
    open(os.path.join(r, "new", "y"), "w").close()
    os.rename(os.path.join(r, "new"), os.path.join(r, "moved"))
    time.sleep(0.3)
    open(os.path.join(r, "moved", "z"), "w").close()
    ev = events(p)
    for want in (("create", os.path.join(r, "old", "x")), ("create", os.path.join(r, "new")),
                 ("create", os.path.join(r, "new", "y")), ("create", os.path.join(r, "moved", "z"))):
        check("watch recursive: %s %s" % (want[0], os.path.relpath(want[1], tmp)), want in ev, ev)
    shutil.rmtree(r)
    ev = events(p)
    check("watch recursive: removing the watched directory reports it and ends the stream",
          ("remove", r) in ev and ev[-1] == ("END", EOF), ev)
    p.close()

    # Hostile requests and frames.
    os.symlink(d, os.path.join(tmp, "link"))
    open(os.path.join(tmp, "file"), "w").close()
    bad = {"a relative path": (tlv(T_PATH, "watched"), errno.EINVAL),
           "a missing directory": (tlv(T_PATH, os.path.join(tmp, "none")), errno.ENOENT),
           "a regular file": (tlv(T_PATH, os.path.join(tmp, "file")), errno.ENOTDIR),
           "a symlink to a directory (not followed)": (tlv(T_PATH, os.path.join(tmp, "link")), errno.ENOTDIR),
           "RECURSIVE 2": (tlv(T_PATH, d) + tlv(T_RECURSIVE, 2), errno.EINVAL),
           "no PATH": (tlv(T_RECURSIVE, 1), errno.EINVAL),
           "PATH twice": (tlv(T_PATH, d) + tlv(T_PATH, d), errno.EBADMSG)}
    for name, (payload, want) in bad.items():
        f = first_reply(sock, frame(WATCH, payload))
        check("watch: %s gets ERROR %s" % (name, errno.errorcode[want]),
              f and f[0] == ERROR and u64(f[1], T_ERRNO) == want, f)
    p, f = start(sock, d)
    p.send(DATA, b"junk")
    f = p.next()
    check("watch: a DATA frame mid-watch gets ERROR EPROTO",
          f and f[0] == ERROR and u64(f[1], T_ERRNO) == errno.EPROTO, f)
    p.close()
    print("watch: %d %d" % (results["ok"], results["fail"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
