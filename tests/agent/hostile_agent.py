#!/usr/bin/env python3
"""A hostile amber-agent on a Unix socket, for the host-side trust-boundary tests (issue 17).

usage: hostile_agent.py SOCKET_PATH   (serves until killed; prints "ready" once listening)
       hostile_agent.py --listen unix:SOCKET_PATH [--no-init]   (amber-agent's form, for
       sdk/python/tests/fake_amber.py's FAKE_AMBER_AGENT)

What it answers, by request:
- PING: an agent_version full of terminal escapes, quotes and a newline.
- READ_FILE of a path containing "error": an ERROR whose message carries escapes.
- READ_FILE of a path containing "flood": RESULT, then DATA frames without end.
- READ_FILE of a path containing "stall": RESULT, then silence.
- any other READ_FILE: RESULT with MODE 06777 (setuid, setgid, world-writable), then the bytes
  "owned\\n" and EOF.
- EXEC of anything: STARTED, then STDOUT frames without end (for buffer bounds).
"""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from amber import proto  # noqa: E402

EVIL_VERSION = "1.0\x1b[2J\x1b]0;pwned\x07\"\\\nx"
EVIL_MESSAGE = "no such file\x1b[31m\x1b]0;pwned\x07\r\nFAKE PROMPT$ "


def send(s, ftype, payload=b""):
    s.sendall(proto.encode_frame(ftype, 1, payload))


def read_request(s):
    r = proto.FrameReader()
    while True:
        f = r.next()
        if f is not None:
            return f[0], proto.Tlvs(f[2])
        data = s.recv(65536)
        if not data:
            return None, None
        r.feed(data)


def serve(s):
    try:
        ftype, t = read_request(s)
        if ftype == proto.PING:
            send(s, proto.RESULT, proto.tlv(proto.TAG_PROTO_VERSION, 1)
                 + proto.tlv(proto.TAG_AGENT_VERSION, EVIL_VERSION) + proto.tlv(proto.TAG_UPTIME_MS, 5))
        elif ftype == proto.READ_FILE:
            path = t.str(proto.TAG_PATH, "")
            if "error" in path:
                send(s, proto.ERROR, proto.tlv(proto.TAG_ERRNO, 2) + proto.tlv(proto.TAG_MESSAGE, EVIL_MESSAGE))
                return
            send(s, proto.RESULT, proto.tlv(proto.TAG_MODE, 0o6777) + proto.tlv(proto.TAG_SIZE, 6))
            if "stall" in path:
                s.recv(1)  # until the client gives up
                return
            if "flood" in path:
                chunk = b"x" * proto.DATA_CHUNK
                while True:
                    send(s, proto.DATA, chunk)
            send(s, proto.DATA, b"owned\n")
            send(s, proto.EOF)
        elif ftype == proto.EXEC:
            send(s, proto.STARTED, proto.tlv(proto.TAG_PID, 42))
            chunk = b"y" * proto.DATA_CHUNK
            while True:
                send(s, proto.STDOUT, chunk)
    except OSError:
        pass
    finally:
        s.close()


def main():
    path = sys.argv[1]
    if path == "--listen":
        path = sys.argv[2][len("unix:"):]
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
