"""What a failed e2e test leaves behind: each live VM's console, amber's state and the agent's log.

The guest agent keeps its recent log lines in a ring in memory (guest/agent/logring.h: 512
lines) and hands a dump of it to whoever connects to its log port, the agent's port + 1 (1025 by
default). fetch_agent_log() reads it through amber's vsock Unix socket; save() writes one file
per live VM into RESULTS/<test id>/. read_stat() reads a process's /proc stat line, for the
runner's and the test host's process checks.
"""
import os
import re
import socket
import time

import harness

AGENT_LOG_PORT = 1025  # PROTO_DEFAULT_PORT + 1: logring_serve_start in guest/agent/logring_serve.c
AGENT_LOG_MAX = 256 * 1024  # the ring's whole dump is about 128 KiB


def vsock_uds(vm):
    """The host Unix socket of an amber VM's vsock device (its --vsock uds=...), or None."""
    argv = vm.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == "--vsock":
            m = re.search(r"(?:^|,)uds=([^,]+)", argv[i + 1])
            if m:
                return m.group(1)
    return None


def fetch_agent_log(uds_path, port=AGENT_LOG_PORT, timeout=5.0):
    """The agent's log ring, as text, from a guest behind amber's vsock socket uds_path.
    Raises OSError or ValueError (no handshake) when the guest does not hand it over."""
    deadline = time.monotonic() + harness.scaled(timeout)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(harness.scaled(timeout))
        s.connect(uds_path)
        s.sendall(b"CONNECT %d\n" % port)
        buf = b""
        while len(buf) < AGENT_LOG_MAX and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, sep, body = buf.partition(b"\n")
    if not sep or not re.match(rb"^OK \d+$", head):
        raise ValueError("no handshake from the log port (got %r)" % buf[:80])
    return body.decode("utf-8", "replace")


def agent_log_section(vm):
    """A titled section with the agent's log ring, or a line saying why there is none."""
    uds = vsock_uds(vm)
    if uds is None:
        return "--- agent log: this VM has no vsock device ---"
    try:
        return "--- agent log (guest ring, port %d) ---\n%s" % (AGENT_LOG_PORT, fetch_agent_log(uds))
    except (OSError, ValueError) as e:
        return "--- agent log: not fetched (%s) ---" % e


def safe_name(test_id):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", test_id)[-120:]


def save(vms, results_dir, test_id, state=None):
    """Writes RESULTS/<test id>/vm<N>-<pid>.txt for every VM in vms: console and stderr tails,
    amber's state report (state[vm], if already taken, else asked for now) and, for amber,
    the agent's log ring. Returns the paths written. Never raises: evidence is best effort."""
    out_dir = os.path.join(results_dir, safe_name(test_id))
    paths = []
    for n, vm in enumerate(vms):
        try:
            parts = ["%s: %s" % (test_id, " ".join(vm.argv)), vm.tail(200)]
            report = (state or {}).get(vm)
            parts.append(report if report is not None else vm.state_report())
            if os.path.basename(vm.argv[0]) == "amber" and vm.proc.poll() is None:
                parts.append(agent_log_section(vm))
            os.makedirs(out_dir, exist_ok=True)
            path = os.path.join(out_dir, "vm%d-%d.txt" % (n, vm.proc.pid))
            with open(path, "w") as f:
                f.write("\n".join(parts) + "\n")
            paths.append(path)
        except Exception as e:  # noqa: BLE001 - a failure's evidence must not fail the run
            print("e2e: evidence for %s not saved: %s" % (test_id, e), flush=True)
    return paths


def live_vms():
    """The harness's VMs that are still running."""
    with harness._LIVE_LOCK:
        return list(harness.LIVE)


def report_live(test_id=None, results_dir=None):
    """Prints each live VM's console tail and amber's state report; with test_id and
    results_dir, also saves them with the guest agent's log to RESULTS/<test id>/."""
    state = {}
    for vm in live_vms():
        try:
            state[vm] = vm.state_report()
            print("e2e: live %s (pid %d), console tail:\n%s%s"
                  % (os.path.basename(vm.argv[0]), vm.proc.pid, "\n".join(vm.lines[-15:]),
                     state[vm]), flush=True)
        except Exception as e:  # noqa: BLE001 - a report must never stop the run
            print("e2e: no state from pid %d: %s" % (vm.proc.pid, e), flush=True)
    if test_id and results_dir:
        for path in save(list(state), results_dir, test_id, state):
            print("e2e: evidence in %s" % path, flush=True)


def read_stat(path):
    """(comm, [state, ppid, ...]) from a /proc/.../stat file, or None when it is gone."""
    try:
        with open(path) as f:
            comm, _, rest = f.read().partition("(")[2].rpartition(")")
    except OSError:
        return None
    return comm, rest.split()
