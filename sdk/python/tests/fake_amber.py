#!/usr/bin/env python3
"""A stand-in for build/amber with the same command-line contract, for SDK tests without a VM.

It flocks --pid-file, serves the sandbox API (GET /, POST /pause, POST /resume, GET and PUT
/timeout, whose deadline it keeps as amber does) on --api-sock,
and serves --vsock's hybrid socket (CONNECT <port> / OK) by proxying to a real
`amber-agent --listen unix:` running on this host. Pause stops the agent's process group, so
a connection made while paused is accepted but not served, as with amber. A SHUTDOWN request
ends the process as a guest power-off would (exit.json reason "guest power-off").
Env: FAKE_AMBER_FAIL=msg exits at once with msg on stderr; FAKE_AMBER_BOOT_DELAY_S delays the
agent; FAKE_AMBER_AGENT is the agent binary (default build/amber-agent).
Snapshots (hibernate, templates, fork): started with --api-sock alone, it waits for PUT
/snapshot/load; PUT /snapshot/create (paused only) writes a JSON state file and a memory file.
FAKE_AMBER_SNAP_ENOSPC=1 makes create answer 500 "No space left on device" as amber does. GET /
reports the last load's overrides as "fake_load". FAKE_AMBER_RESTORE_DELAY_S: after a load, the
agent starts that much later (its vsock socket refuses meanwhile), as a restored guest's agent
answers only once the guest runs.
"""
import argparse
import datetime
import fcntl
import http.server
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.state = "Running"
        self.paused_at = None
        self.paused_mono = None
        self.agent = None
        self.done = threading.Event()
        self.reason = ("unknown", 1)
        self.deadline = None  # PUT /timeout: time.monotonic() when it fires
        self.on_timeout = "kill"
        self.load = None  # the last PUT /snapshot/load's overrides
        self.agent_due = None  # after a load: when the agent starts (FAKE_AMBER_RESTORE_DELAY_S)
        self.start_guest = None
        self.pending = []  # a loaded guest's vsock socket, for the main thread to start

    def finish(self, reason, status):
        self.reason = (reason, status)
        self.done.set()


def make_api_handler(st):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def address_string(self):
            return "unix"

        def reply(self, code, obj):
            body = json.dumps(obj).encode() if code != 204 else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def timeout_record(self):
            left = None if st.deadline is None else max(0.0, st.deadline - time.monotonic())
            return {"sandbox_id": st.args.id, "timeout_s_left": left, "on_timeout": st.on_timeout,
                    "deadline": None if left is None else "later"}

        def do_PUT(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw)
            except ValueError:
                return self.reply(400, {"fault_message": "bad JSON"})
            if self.path in ("/snapshot/create", "/snapshot/load"):
                return self.reply(*snapshot_request(st, self.path, body))
            if self.path != "/timeout":
                return self.reply(404, {"fault_message": "unknown path %s" % self.path})
            secs = body.get("timeout_s") if isinstance(body, dict) else None
            if isinstance(secs, bool) or not isinstance(secs, int) or secs < 1:
                return self.reply(400, {"fault_message": "timeout_s must be an integer >= 1"})
            action = body.get("on_timeout", st.on_timeout)
            if action not in ("kill", "pause"):
                return self.reply(400, {"fault_message": "on_timeout must be kill or pause"})
            with st.lock:
                st.deadline, st.on_timeout = time.monotonic() + secs, action
            self.reply(200, self.timeout_record())

        def do_GET(self):
            if self.path == "/timeout":
                return self.reply(200, self.timeout_record())
            if self.path != "/":
                return self.reply(404, {"fault_message": "unknown path %s" % self.path})
            with st.lock:
                self.reply(200, {"id": st.args.id, "state": st.state, "app_name": "fake-amber",
                                 "paused_at": st.paused_at, "vcpus": st.args.vcpus,
                                 "mem_mib": st.args.mem_mib, "fake_load": st.load})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            with st.lock:
                if self.path == "/pause":
                    if st.state == "Paused":
                        return self.reply(409, {"fault_message": "sandbox %s is already paused" % st.args.id})
                    os.killpg(st.agent.pid, signal.SIGSTOP)
                    st.state, st.paused_at, st.paused_mono = "Paused", now_iso(), time.monotonic()
                    return self.reply(200, {"sandbox_id": st.args.id, "paused": True, "paused_at": st.paused_at})
                if self.path == "/resume":
                    if st.state != "Paused":
                        return self.reply(409, {"fault_message": "sandbox %s is not paused" % st.args.id})
                    os.killpg(st.agent.pid, signal.SIGCONT)
                    ms = int((time.monotonic() - st.paused_mono) * 1000)
                    st.state, st.paused_at = "Running", None
                    return self.reply(200, {"sandbox_id": st.args.id, "paused": False,
                                            "resumed_at": now_iso(), "paused_ms": ms})
            self.reply(404, {"fault_message": "unknown path %s" % self.path})

    return H


def snapshot_request(st, path, body):
    """(status, reply) of PUT /snapshot/create or /snapshot/load."""
    with st.lock:
        if path == "/snapshot/create":
            if st.state != "Paused":
                return 400, {"fault_message": "the VM must be paused"}
            mem = body["mem_file_path"]
            if os.environ.get("FAKE_AMBER_SNAP_ENOSPC") == "1":
                open(mem, "wb").close()
                return 500, {"fault_message": "writing '%s': No space left on device" % mem}
            with open(mem, "wb") as f:
                f.write(b"fake guest RAM\n")
            with open(body["snapshot_path"], "w") as f:
                json.dump({"magic": "FAKESNAP", "drive": st.args.drive, "vcpus": st.args.vcpus,
                           "mem_mib": st.args.mem_mib}, f)
            return 204, {}
        if st.state != "Not started":
            return 400, {"fault_message": "snapshot/load needs a fresh amber"}
        snap = body.get("snapshot_path", "")
        mem = (body.get("mem_backend") or {}).get("backend_path") or body.get("mem_file_path", "")
        try:
            with open(snap) as f:
                saved = json.load(f)
            if saved.get("magic") != "FAKESNAP":
                raise ValueError
        except OSError as e:
            return 400, {"fault_message": "cannot open snapshot file '%s': %s" % (snap, e.strerror)}
        except (ValueError, AttributeError):
            return 400, {"fault_message": "snapshot file '%s': bad magic" % snap}
        if not os.path.isfile(mem):
            return 400, {"fault_message": "cannot open memory file '%s': No such file or directory" % mem}
        vo = body.get("vsock_override") or {}
        st.load = {"snapshot_path": snap, "mem": mem, "vsock_override": vo,
                   "drive_overrides": body.get("drive_overrides") or []}
        # The agent must be started by the main thread: PR_SET_PDEATHSIG follows the thread.
        st.pending.append(vo["uds_path"])
        st.state = "Running"
    while st.pending:
        time.sleep(0.02)
    return 204, {}


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            return None
        buf += b
    return buf


def make_vsock_handler(st, agent_sock):
    class V(socketserver.BaseRequestHandler):
        def handle(self):
            c = self.request
            line = b""
            while not line.endswith(b"\n"):
                b = c.recv(1)
                if not b or len(line) > 64:
                    return
                line += b
            if not line.startswith(b"CONNECT "):
                return
            g = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                g.connect(agent_sock)
            except OSError:
                return  # no listener yet: close, as a guest RST does
            c.sendall(b"OK 1073741824\n")
            hdr = recv_exact(c, 9)
            if hdr is None:
                return
            n, ftype, sid = struct.unpack(">IBI", hdr)
            payload = recv_exact(c, n) if n else b""
            if ftype == 0x05:  # SHUTDOWN: answer, then "power off"
                c.sendall(struct.pack(">IBI", 0, 0x20, sid))
                c.close()
                st.finish("guest power-off", 0)
                return
            g.sendall(hdr + (payload or b""))
            t = threading.Thread(target=pump, args=(g, c), daemon=True)
            t.start()
            pump(c, g)
            t.join()
            g.close()

    return V


def die_with_parent():
    """The agent dies with us even on SIGKILL (PR_SET_PDEATHSIG), as a guest would."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--id", "--api-sock", "--kernel", "--initrd", "--drive", "--vsock", "--console",
                 "--pid-file", "--exit-file", "--net"):
        ap.add_argument(flag)
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--mem-mib", type=int, default=256)
    args = ap.parse_args()
    if os.environ.get("FAKE_AMBER_FAIL"):
        print("amber: error: %s" % os.environ["FAKE_AMBER_FAIL"], file=sys.stderr)
        return 1
    pidf = os.open(args.pid_file, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(pidf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(pidf, 0)
    os.write(pidf, b"%d\n" % os.getpid())
    st = State(args)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda signo, _f: st.finish("received %s" % signal.Signals(signo).name, 0))

    d = os.path.dirname(args.pid_file)
    agent_sock = os.path.join(d, "agent.sock")
    console = open(args.console, "ab", buffering=0)
    socks = [args.api_sock, agent_sock]

    def start_guest(uds):
        console.write(b"fake-amber: booting\n")
        time.sleep(float(os.environ.get("FAKE_AMBER_BOOT_DELAY_S", "0")))
        vs = UnixServer(uds, make_vsock_handler(st, agent_sock))
        socks.append(uds)
        threading.Thread(target=vs.serve_forever, daemon=True).start()
        if st.load is not None:
            st.agent_due = time.monotonic() + float(os.environ.get("FAKE_AMBER_RESTORE_DELAY_S", "0"))
        else:
            start_agent()

    def start_agent():
        st.agent_due = None
        agent_bin = os.environ.get("FAKE_AMBER_AGENT") or os.path.join(REPO, "build", "amber-agent")
        st.agent = subprocess.Popen([agent_bin, "--listen", "unix:" + agent_sock, "--no-init"],
                                    stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                                    start_new_session=True, preexec_fn=die_with_parent)

    st.start_guest = start_guest
    if args.vsock:
        start_guest(dict(kv.split("=", 1) for kv in args.vsock.split(","))["uds"])
    else:
        st.state = "Not started"
    api = UnixServer(args.api_sock, make_api_handler(st))
    threading.Thread(target=api.serve_forever, daemon=True).start()
    while not st.done.wait(0.02):
        if st.pending:
            start_guest(st.pending[0])
            st.pending.clear()
        if st.agent_due is not None and time.monotonic() >= st.agent_due:
            start_agent()
        if st.agent is not None and st.agent.poll() is not None:
            st.finish("agent exited with status %s" % st.agent.returncode, 1)
        with st.lock:  # the /timeout deadline, kept here as amber keeps it
            if st.deadline is not None and time.monotonic() >= st.deadline:
                st.deadline = None
                if st.on_timeout == "kill":
                    st.finish("timeout: the sandbox's deadline passed (on_timeout kill)", 0)
                elif st.state == "Running":
                    os.killpg(st.agent.pid, signal.SIGSTOP)
                    st.state, st.paused_at, st.paused_mono = "Paused", now_iso(), time.monotonic()
    if st.agent is not None:
        try:
            os.killpg(st.agent.pid, signal.SIGCONT)
            os.killpg(st.agent.pid, signal.SIGKILL)
        except OSError:
            pass
        st.agent.wait()
    for p in socks:
        try:
            os.unlink(p)
        except OSError:
            pass
    reason, status = st.reason
    with open(args.exit_file, "w") as f:
        json.dump({"reason": reason, "status": status}, f)
    console.write(b"fake-amber: exit: %s\n" % reason.encode())
    return status


if __name__ == "__main__":
    sys.exit(main())
