"""Unit tests of a failed e2e test's evidence (tests/e2e/evidence.py): the guest agent's log ring,
fetched from the real agent binary through a stand-in for amber's vsock socket, lands in
RESULTS/<test id>/ when a test fails. No VM."""
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import evidence  # noqa: E402
import harness  # noqa: E402
import run_tests as R  # noqa: E402

AGENT = os.path.join(harness.BUILD, "amber-agent")


class FakeVsock:
    """amber's vsock Unix socket in miniature: reads 'CONNECT <port>', answers 'OK <n>' and
    relays the connection to the agent's Unix socket for that port (PATH.log for the log port)."""

    def __init__(self, path, agent_path):
        self.agent_path = agent_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                line = b""
                while not line.endswith(b"\n"):
                    line += c.recv(1)
                port = int(line.split()[1])
                target = self.agent_path + (".log" if port == evidence.AGENT_LOG_PORT else "")
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as a:
                    a.connect(target)
                    c.sendall(b"OK 1073741824\n")
                    while True:
                        data = a.recv(65536)
                        if not data:
                            break
                        c.sendall(data)

    def close(self):
        self.sock.close()


class FakeVm:
    """What evidence.save reads of a harness.Vm."""

    def __init__(self, uds):
        self.argv = ["/build/amber", "--kernel", "k", "--vsock", "cid=3,uds=%s" % uds]
        self.proc = subprocess.Popen(["sleep", "60"])

    def tail(self, n=40):
        return "--- console ---\nthe guest's last words"

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def state_report(self):
        return "--- amber state (SIGUSR2) ---\nstate: end of report"


@unittest.skipUnless(os.access(AGENT, os.X_OK), "build/amber-agent is not built (make all)")
class AgentLogEvidence(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="amber-evidence-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.agent_sock = os.path.join(self.dir, "agent.sock")
        self.agent = subprocess.Popen([AGENT, "--listen", "unix:" + self.agent_sock, "--no-init"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self._stop_agent)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.agent_sock + ".log") and time.monotonic() < deadline:
            time.sleep(0.02)
        # One connection that leaves without a request: the agent logs it in its ring.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.agent_sock)
        self.uds = os.path.join(self.dir, "vsock.sock")
        self.vsock = FakeVsock(self.uds, self.agent_sock)
        self.addCleanup(self.vsock.close)

    def _stop_agent(self):
        self.agent.terminate()
        self.agent.wait(10)

    def wait_for_line(self, needle):
        deadline = time.monotonic() + 10
        while True:
            text = evidence.fetch_agent_log(self.uds)
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def test_the_ring_comes_through_the_log_port(self):
        text = self.wait_for_line(": done (")
        self.assertRegex(text, r"^amber-agent log: lines 1-\d+ of \d+ written \(0 lost to wrap\)\n")
        self.assertRegex(text, r"\] \d+: log port: serving the ring on .*agent\.sock\.log")
        self.assertRegex(text, r"\] \d+: connection \d+: serving\n")
        self.assertRegex(text, r"\] \d+: connection \d+: done \(")

    def test_a_failed_test_saves_the_ring_with_its_vm(self):
        self.wait_for_line(": done (")
        vm = FakeVm(self.uds)
        self.addCleanup(vm.stop)
        with harness._LIVE_LOCK:
            harness.LIVE.add(vm)
        self.addCleanup(lambda: harness.LIVE.discard(vm))
        results = os.path.join(self.dir, "results")

        class Failing(unittest.TestCase):
            def test_it(self):
                self.fail("the stream stalled")

        R.CountingResult.outcomes = R.Outcomes()
        R.CountingResult.results_dir = results
        self.addCleanup(setattr, R.CountingResult, "results_dir", None)
        runner = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0, resultclass=R.CountingResult)
        with contextlib.redirect_stdout(io.StringIO()):
            runner.run(unittest.TestLoader().loadTestsFromTestCase(Failing))
        test_dir = os.path.join(results, evidence.safe_name(Failing("test_it").id()))
        with open(os.path.join(test_dir, "vm0-%d.txt" % vm.proc.pid)) as f:
            saved = f.read()
        self.assertIn("the guest's last words", saved)
        self.assertIn("state: end of report", saved)
        self.assertIn("--- agent log (guest ring, port 1025) ---\namber-agent log: lines 1-", saved)
        self.assertRegex(saved, r"connection \d+: done \(")

    def test_a_guest_that_does_not_answer_is_said_so(self):
        vm = FakeVm(os.path.join(self.dir, "nobody.sock"))
        self.addCleanup(vm.stop)
        self.assertRegex(evidence.agent_log_section(vm), r"^--- agent log: not fetched \(")


if __name__ == "__main__":
    unittest.main()
