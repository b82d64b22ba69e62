"""e2e: pause and resume that lose nothing (issue 5), with a real guest and the agent.

Two guests: TestPauseQuick (initramfs) for the short checks, ending with SIGTERM while paused;
TestPauseLong (ext4 root drive) for the 30 s pause and the pause-under-load cycles.
$AMBER_PAUSE_CYCLES sets the number of load cycles (default 100; `make soak` runs 1,000).
Test names are numbered because the last check of each guest consumes it.
"""
import hashlib
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

MEM_MIB = 256
ISO_US = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


class PauseGuest(unittest.TestCase):
    """One guest with an API socket and vsock for the whole class."""

    drive = False

    @classmethod
    def setUpClass(cls):
        cls.session = harness.Session(cls.__name__)
        cls.vsock = cls.session.path("vsock.sock")
        cls.api_path = cls.session.path("api.sock")
        drives = []
        if cls.drive:
            drives = [{"path": cls.session.rootfs_copy(), "root": True}]
        cls.vm = cls.session.amber(initrd=True, vcpus=2, mem_mib=MEM_MIB, vsock=(3, cls.vsock),
                                   api_sock=cls.api_path, drives=drives)
        try:
            cls.vm.wait_for(harness.READY)
            U.wait_agent(cls.vsock)
        except BaseException:
            cls.session.close()
            raise
        cls.api = U.Api(cls.api_path)

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "api"):
            cls.api.close()
        cls.session.close()

    def setUp(self):
        U.arm_watchdog(600)
        self.addCleanup(U.disarm_watchdog)
        self.assertTrue(self.vm.alive(), "amber died during an earlier test\n%s" % self.vm.tail())

    def call(self, method, url, body=None, want=None):
        status, reply = self.api.call(method, url, body)
        if want is not None:
            self.assertEqual(status, want, "%s %s answered %d %r, expected %d"
                             % (method, url, status, reply, want))
        return status, reply

    def pause(self):
        return self.call("POST", "/pause", want=200)[1]

    def resume(self):
        return self.call("POST", "/resume", want=200)[1]

    def state(self):
        return self.call("GET", "/", want=200)[1]["state"]

    def stall_report(self):
        """What is still alive after the stream stalled: the VM, a fresh agent connection, the guest."""
        parts = []
        try:  # a diagnostic must not mask the failure it explains
            parts.append(self.vm.state_report())  # amber's view first, while the stalled connection exists
            parts.append("VMM state: %s" % (self.api.call("GET", "/")[1].get("state")
                                            if self.vm.alive() else "exited"))
            res = U.ctl_exec(self.vsock, "echo alive; cat /proc/loadavg; dmesg | tail -n 5", timeout=30)
            parts.append("a new agent connection: exit %d, %r" % (res.returncode, res.stdout[-600:]))
        except Exception as e:  # noqa: BLE001
            parts.append("diagnosis failed: %s" % e)
        return "; ".join(parts)

    def pipelined(self, requests):
        """Sends 'METHOD PATH' requests in a single write on a new connection; returns the statuses."""
        raw = "".join("%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n" % r for r in requests)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(harness.scaled(30))
            s.connect(self.api_path)
            s.sendall(raw.encode())
            reader = s.makefile("rb")
            statuses = []
            for _ in requests:
                statuses.append(int(reader.readline().split()[1]))
                length = 0
                while True:
                    line = reader.readline().strip()
                    if not line:
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                reader.read(length)
            return statuses

    def sh(self, script, **kw):
        return U.guest_sh(self.vsock, script, **kw)


class TestPauseQuick(PauseGuest):
    def tearDown(self):
        # Never leave the shared guest paused for the next check.
        if self.vm.alive() and self.api.call("GET", "/")[1].get("state") == "Paused":
            self.api.call("POST", "/resume")

    def test_01_files_survive_pause(self):
        content = os.urandom(48 * 1024).hex()
        self.sh("cat > /tmp/survive.txt", input=content.encode())
        reply = self.pause()
        self.assertIs(reply.get("paused"), True, "POST /pause reply %r lacks paused: true" % reply)
        self.assertRegex(reply.get("paused_at", ""), ISO_US,
                         "paused_at should be ISO-8601 UTC with microseconds")
        self.assertIn("sandbox_id", reply)
        self.assertEqual(self.state(), "Paused")
        time.sleep(0.5)
        reply = self.resume()
        self.assertIs(reply.get("paused"), False, "POST /resume reply %r" % reply)
        self.assertRegex(reply.get("resumed_at", ""), ISO_US)
        self.assertGreaterEqual(reply.get("paused_ms", -1), 400,
                                "paused_ms %r should cover the 0.5 s pause" % reply.get("paused_ms"))
        self.assertEqual(self.sh("cat /tmp/survive.txt"), content,
                         "the file read back after pause/resume differs from what was written")

    def test_02_execution_stops_while_paused(self):
        # A loop appends the guest's monotonic clock (/proc/uptime, builtins only) every 10 ms.
        self.sh("rm -f /tmp/ts.log /tmp/ts.stop; setsid sh -c 'while [ ! -e /tmp/ts.stop ]; do "
                "read up idle < /proc/uptime; echo $up >> /tmp/ts.log; usleep 10000; done' "
                "</dev/null >/dev/null 2>&1 &")
        time.sleep(1.5)
        self.pause()
        t0 = time.monotonic()
        time.sleep(1.5)
        # A resume and a pause pipelined in one write reach amber in one read: the vCPUs must
        # stay parked although the resume had been answered (they are released a loop turn
        # later, which the pause overtakes). The gap below stays one gap if they do.
        self.assertEqual(self.pipelined(["POST /resume", "POST /pause"]), [200, 200])
        time.sleep(1.5)
        t1 = time.monotonic()
        self.resume()
        paused_s = t1 - t0
        time.sleep(1.5)
        log = self.sh("touch /tmp/ts.stop; sleep 0.2; cat /tmp/ts.log")
        stamps = [float(x) for x in log.split()]
        self.assertGreater(len(stamps), 20, "the timestamp loop barely ran: %r" % stamps[:20])
        gaps = [(b - a, i) for i, (a, b) in enumerate(zip(stamps, stamps[1:]))]
        gap, idx = max(gaps)
        others = sorted((g for g in gaps if g[1] != idx), reverse=True)[:5]
        self.assertGreater(gap, paused_s - 0.3, "the longest gap %.2f s is shorter than the %.2f s "
                           "pause: the guest ran while paused (or its clock stood still)"
                           % (gap, paused_s))
        self.assertLess(gap, paused_s + 1.5, "the gap %.2f s is much longer than the pause %.2f s"
                        % (gap, paused_s))
        self.assertLess(others[0][0], paused_s / 2, "expected a single gap of about %.1f s; the "
                        "next longest are %r (seconds, entry index; the pause is at %d)"
                        % (paused_s, [(round(g, 2), i) for g, i in others], idx))
        self.assertGreaterEqual(idx, 10, "too few entries before the pause")
        self.assertGreaterEqual(len(stamps) - idx - 1, 10, "the loop did not carry on after resume")
        harness.log("pause %.2f s -> guest gap %.2f s, %d entries before, %d after; next gaps %r"
                    % (paused_s, gap, idx + 1, len(stamps) - idx - 1,
                       [(round(g, 2), i) for g, i in others[:3]]))

    def test_03_double_calls(self):
        self.pause()
        status, reply = self.call("POST", "/pause", want=409)
        self.assertIn("fault_message", reply, "409 body must be {\"fault_message\"}: %r" % reply)
        self.assertEqual(self.state(), "Paused", "a refused second pause must leave the VM paused")
        self.call("PATCH", "/vm", {"state": "Paused"}, want=204)
        self.assertEqual(self.state(), "Paused")
        self.resume()
        status, reply = self.call("POST", "/resume", want=409)
        self.assertIn("fault_message", reply)
        self.assertEqual(self.state(), "Running")
        for st in ("Paused", "Paused", "Resumed", "Resumed"):
            self.call("PATCH", "/vm", {"state": st}, want=204)
            self.assertEqual(self.state(), "Paused" if st == "Paused" else "Running",
                             "PATCH /vm %s did not leave the VM in that state" % st)
        self.assertEqual(self.sh("echo alive"), "alive\n")

    def test_04_exec_while_paused(self):
        self.pause()
        conn = U.VsockConn(self.vsock, handshake=False)
        try:
            payload = os.urandom(32 * 1024)  # fits the socket buffer
            conn.send(U.exec_request(shell="cat; echo done"))
            for off in range(0, len(payload), 65536):
                conn.send(U.frame(U.T_DATA, payload[off:off + 65536]))
            conn.send(U.frame(U.T_EOF))
            conn.sock.settimeout(1.5)
            try:
                early = conn.sock.recv(4096)
            except TimeoutError:
                early = None
            self.assertIsNone(early, "a connection opened while paused was served before resume "
                              "(got %r): the VMM touched the device while paused" % early)
            self.assertEqual(self.state(), "Paused")
            self.resume()
            conn.sock.settimeout(harness.scaled(60))
            conn.handshake()
            res = U.read_exec_result(conn)
        finally:
            conn.close()
        self.assertEqual(res["code"], 0, "the exec queued during the pause failed: %r" % res)
        self.assertEqual(res["stdout"], payload + b"done\n",
                         "the exec queued during the pause lost or corrupted its data")

    def test_99_sigterm_while_paused(self):
        self.pause()
        self.vm.signal(signal.SIGTERM)
        rc = self.vm.wait_exit(30)
        self.assertEqual(rc, 0, "amber should exit 0 on SIGTERM while paused\n%s" % self.vm.tail())
        self.assertTrue(any(re.search(r"terminated by SIGTERM", ln) for ln in self.vm.stderr_lines),
                        "amber should log why it ended\n%s" % self.vm.tail())


class TestPauseLong(PauseGuest):
    drive = True

    def guest_clock_offset(self):
        """(guest wall clock - host wall clock, uncertainty): the guest read its clock somewhere
        inside the host interval around the exec, so the uncertainty is that interval."""
        t_before = time.time()
        out = self.sh("adjtimex")
        t_after = time.time()
        sec = int(re.search(r"time\.tv_sec:\s*(\d+)", out).group(1))
        usec = int(re.search(r"time\.tv_usec:\s*(\d+)", out).group(1))
        guest = sec + usec / 1e6
        if t_before <= guest <= t_after:
            return 0.0, t_after - t_before
        off = guest - t_after if guest > t_after else guest - t_before
        return off, t_after - t_before

    def test_01_long_pause_no_watchdog(self):
        off0, _ = self.guest_clock_offset()
        clocksource = self.sh("cat /sys/devices/system/clocksource/clocksource0/current_clocksource")
        self.pause()
        time.sleep(30)
        self.resume()
        off1, _ = self.guest_clock_offset()
        time.sleep(5)  # give the soft-lockup and RCU detectors time to run after resume
        off2, rtt = self.guest_clock_offset()
        harness.log("guest clock - host clock (%s): %+.3f s before the 30 s pause, %+.3f s "
                    "right after, %+.3f s 5 s later (exec round trip %.2f s)"
                    % (clocksource.strip(), off0, off1, off2, rtt))
        # What the pause does to the clock: kvmclock runs on while paused, so the guest's offset
        # from the host must not move by more than 1 s across a 30 s pause.
        # (Right after resume, so that the running drift described below stays out of it.)
        self.assertLess(abs(off1 - off0), 1.0, "the 30 s pause moved the guest's wall clock by "
                        "%+.2f s relative to the host (offset %+.2f s before, %+.2f s right after "
                        "resume, %+.2f s 5 s later)" % (off1 - off0, off0, off1, off2))
        # The absolute offset is test_01b's, which asserts or skips.
        type(self).clock_offsets = (off0, off2)
        dmesg = self.sh("dmesg")
        bad = [ln for ln in dmesg.splitlines()
               if re.search(r"soft lockup|hard lockup|hard LOCKUP|rcu.*(stall|detected stalls)"
                            r"|watchdog: BUG", ln, re.I)]
        self.assertEqual(bad, [], "the guest's watchdogs complained about the 30 s pause")

    def test_01b_absolute_clock_after_pause(self):
        """The guest's wall clock is within 1 s of the host's after the 30 s pause. Exact on
        real hardware; under nested virtualization the host's TSC calibration is off by a few
        percent, so a running guest's kvm-clock drifts from the host's realtime with or without
        a pause, and the check is reported as skipped there (test_01 bounds what the pause
        itself does)."""
        if U.nested_virt():
            self.skipTest("nested virtualization: the guest's kvm-clock drifts from host realtime "
                          "whether or not it pauses (test_01 checks the pause's own effect)")
        offsets = getattr(type(self), "clock_offsets", None)
        if offsets is None:
            self.skipTest("test_01_long_pause_no_watchdog did not run or did not finish")
        off0, off2 = offsets
        self.assertLess(abs(off2), 1.0, "the guest's wall clock is %+.2f s off the host's after a "
                        "30 s pause (%+.2f s before it)" % (off2, off0))

    def test_02_pause_under_load(self):
        cycles = int(os.environ.get("AMBER_PAUSE_CYCLES", "100"))
        pid = self.vm.pid
        # Guest writer: 64 KiB files with fsync onto the ext4 root (virtio-blk), a checksum each.
        self.sh("mkdir -p /load && rm -f /load/*; setsid sh -c 'i=0; while [ ! -e /load/stop ]; "
                "do f=/load/f$((i % 40)); dd if=/dev/urandom of=$f bs=4096 count=16 conv=fsync "
                "2>/dev/null; sha256sum $f > $f.sha; i=$((i+1)); echo $i > /load/count; done; "
                "echo stopped > /load/stopped' </dev/null >/dev/null 2>&1 &")
        # vsock stream: cat echoes what we stream, so both directions are checked.
        stream = U.VsockConn(self.vsock)
        stream.send(U.exec_request(argv=["cat"]))
        sent_hash, recv_hash = hashlib.sha256(), hashlib.sha256()
        counts = {"sent": 0, "recv": 0}
        errors = []
        stop = threading.Event()
        block = os.urandom(1 << 20)

        def writer():
            try:
                off = 0
                while not stop.is_set():
                    chunk = block[off:off + 16384]
                    off = (off + 16384 + 7) % ((1 << 20) - 16384)
                    stream.send(U.frame(U.T_DATA, chunk))
                    sent_hash.update(chunk)
                    counts["sent"] += len(chunk)
                    time.sleep(0.002)
                stream.send(U.frame(U.T_EOF))
            except OSError as e:
                errors.append("stream write: %s" % e)

        result = {}

        def reader():
            try:
                while True:
                    ftype, payload = stream.read_frame()
                    if ftype == U.T_STDOUT:
                        recv_hash.update(payload)
                        counts["recv"] += len(payload)
                    elif ftype == U.T_EXIT:
                        result.update(U.parse_tlvs(payload))
                        return
                    elif ftype not in (U.T_STARTED, U.T_STDERR):
                        errors.append("stream: unexpected frame %#x %r" % (ftype, payload[:200]))
                        return
            except (OSError, EOFError) as e:
                errors.append("stream read: %s" % e)

        stream.sock.settimeout(harness.scaled(120))
        threads = [threading.Thread(target=writer, daemon=True),
                   threading.Thread(target=reader, daemon=True)]
        for t in threads:
            t.start()

        api_failures = []
        rng = random.Random(int(os.environ.get("AMBER_PAUSE_SEED", "12345")))
        lat = []

        def cycle(i):
            use_patch = i % 2 == 1
            for pause in (True, False):
                t0 = time.monotonic()
                if use_patch:
                    st, body = self.api.call("PATCH", "/vm",
                                             {"state": "Paused" if pause else "Resumed"})
                    ok = st == 204
                else:
                    st, body = self.api.call("POST", "/pause" if pause else "/resume")
                    ok = st == 200
                lat.append(time.monotonic() - t0)
                if not ok:
                    api_failures.append((i, "pause" if pause else "resume", st, body))
                time.sleep(rng.uniform(0.0, 0.05) if pause else rng.uniform(0.0, 0.15))

        for i in range(5):  # warm up before the baseline
            cycle(-1 - i)
        fd0, rss0 = U.fd_count(pid), U.vmm_rss_kib(pid, MEM_MIB)
        fds0 = U.fd_list(pid)
        t_start = time.monotonic()
        for i in range(cycles):
            try:
                cycle(i)
            except OSError as e:  # no answer at all: say how amber ended, if it did
                rc = self.vm.proc.poll()
                self.fail("cycle %d: the API did not answer (%s); amber %s\n%s"
                          % (i, e, "is alive" if rc is None else "exited with status %s" % rc,
                             self.vm.tail()))
            if i % 100 == 99:
                harness.log("%d cycles, %.0f s, vmm rss %d KiB, %d fds, stream %d bytes"
                            % (i + 1, time.monotonic() - t_start, U.vmm_rss_kib(pid, MEM_MIB),
                               U.fd_count(pid), counts["recv"]))
        elapsed = time.monotonic() - t_start
        fd1 = U.settled_fd_count(pid, fd0)
        rss1 = U.vmm_rss_kib(pid, MEM_MIB)
        stop.set()
        for t in threads:
            t.join(harness.scaled(120))
        stream.close()
        lat.sort()
        harness.log("%d cycles in %.1f s; API call latency median %.1f ms, max %.1f ms; stream "
                    "%d bytes; vmm rss %d -> %d KiB; fds %d -> %d"
                    % (cycles, elapsed, lat[len(lat) // 2] * 1e3, lat[-1] * 1e3, counts["recv"],
                       rss0, rss1, fd0, fd1))

        self.assertEqual(api_failures, [], "pause/resume API calls failed under load")
        if errors:
            errors.append(self.stall_report())
        self.assertFalse(errors, "the vsock stream broke during the cycles:\n%s" % "\n".join(errors))
        self.assertFalse(any(t.is_alive() for t in threads), "the vsock stream did not finish")
        self.assertEqual(result.get(U.TAG_EXIT_CODE), 0, "the streaming exec ended badly: %r"
                         % result)
        self.assertEqual(counts["recv"], counts["sent"], "the stream lost bytes")
        self.assertEqual(recv_hash.hexdigest(), sent_hash.hexdigest(),
                         "the streamed bytes came back corrupted")
        self.assertEqual(fd1, fd0, "amber's fd count changed over %d cycles\nbefore: %s\nafter: %s"
                         % (cycles, fds0, U.fd_list(pid)))
        self.assertLess(abs(rss1 - rss0), 1024, "amber's own RSS (guest RAM excluded) moved by "
                        "%d KiB over %d cycles" % (rss1 - rss0, cycles))

        out = self.sh("touch /load/stop; i=0; while [ ! -e /load/stopped ] && [ $i -lt 300 ]; do "
                      "usleep 100000; i=$((i+1)); done; cat /load/count; sync; "
                      "echo 3 > /proc/sys/vm/drop_caches; cd /load && for s in f*.sha; do "
                      "sha256sum -c $s >/dev/null 2>&1 || echo BAD $s; done", timeout=harness.scaled(90))
        lines = out.split()
        self.assertGreater(int(lines[0]), 10, "the guest writer barely ran during the cycles")
        self.assertNotIn("BAD", out, "files written during the cycles fail their checksums: %s"
                         % out)
        harness.log("guest wrote %s checksummed files during the cycles" % lines[0])


if __name__ == "__main__":
    unittest.main()
