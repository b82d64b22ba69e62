"""e2e: pause where it breaks (issue 14, part 4): guest RAM stays resident under host memory
pressure, a TCP stream over the TAP and O_DIRECT block writes in flight cross pauses intact, two
API clients storm one socket, pauses during boot and at power-off, 8 spinning vCPUs paused often.

Sizes for make test are small enough for the TCG test host (see docs/benchmarks-fair.md); the
environment scales them up:
  AMBER_EDGE_MEM_MIB     guest data held in RAM and hashed (default 64; the issue's 256)
  AMBER_EDGE_MEM_CYCLES  pause/pressure/resume cycles over it (default 3; the issue's 20)
  AMBER_EDGE_HOG_MIB     host memory a child touches while amber is paused (default 512)
  AMBER_EDGE_TCP_MIB     MiB streamed host->guest over the TAP across pauses (default 16)
  AMBER_EDGE_STORM       API calls per client in the two-client storm (default 100)
  AMBER_EDGE_STORM_ROUNDS rounds after it of a resume and a pause released together (default 30)
  AMBER_EDGE_8CPU_PAUSES pauses of the 8 spinning vCPUs (default 100)
"""
import hashlib
import http.client
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

HELD_MIB = int(os.environ.get("AMBER_EDGE_MEM_MIB", "64"))
MEM_CYCLES = int(os.environ.get("AMBER_EDGE_MEM_CYCLES", "3"))
HOG_MIB = int(os.environ.get("AMBER_EDGE_HOG_MIB", "512"))
TCP_MIB = int(os.environ.get("AMBER_EDGE_TCP_MIB", "16"))
STORM_CALLS = int(os.environ.get("AMBER_EDGE_STORM", "100"))
STORM_ROUNDS = int(os.environ.get("AMBER_EDGE_STORM_ROUNDS", "30"))
SPIN_PAUSES = int(os.environ.get("AMBER_EDGE_8CPU_PAUSES", "100"))
# The held data lives in the guest's tmpfs, in guest RAM; give the guest room for it twice over.
MEM_MIB = max(256, 192 + 2 * HELD_MIB)
HELD = "/dev/shm/held"
BLOCK_MIB = min(HELD_MIB, 64)  # the O_DIRECT writes copy the held data onto the scratch drive
TAP = "amber-edge-tap0"
HOST_IP, GUEST_IP = "10.0.78.1", "10.0.78.2"
TCP_PORT = 5011
OK_STATUSES = (200, 204, 409)


def run(argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)


def host_memory_pressure(hog_mib):
    """Drops the host's caches and has a child touch hog_mib of anonymous memory, then exit.
    Returns a note on what the kernel could reclaim (without swap, no anonymous page)."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    code = ("import mmap\nm = mmap.mmap(-1, %d << 20)\nchunk = b'\\1' * (1 << 20)\n"
            "for _ in range(%d):\n    m.write(chunk)\n" % (hog_mib, hog_mib))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=harness.scaled(120))
    with open("/proc/meminfo") as f:
        swap = int(re.search(r"^SwapTotal:\s+(\d+)", f.read(), re.M).group(1))
    return "swap %d KiB" % swap


def vmm_cpu_s_over(pid, seconds):
    """CPU seconds (user + system, all threads) the process uses over the next `seconds`."""
    def cpu():
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    before = cpu()
    time.sleep(seconds)
    return cpu() - before


def hog_size_mib():
    """$AMBER_EDGE_HOG_MIB (default 512), at most half of what the host has available: pressure
    without calling the OOM killer on amber."""
    with open("/proc/meminfo") as f:
        avail = int(re.search(r"^MemAvailable:\s+(\d+)", f.read(), re.M).group(1)) // 1024
    return max(64, min(avail // 2, HOG_MIB))


class EdgeGuest(unittest.TestCase):
    """One initramfs guest with the agent, a scratch drive, a TAP when the host allows one, and
    HELD_MIB of random data in its tmpfs (hashed once) for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.session = harness.Session(cls.__module__ + "." + cls.__name__)
        try:
            cls.boot()
        except BaseException:
            cls.session.close()
            cls.drop_tap()
            raise

    @classmethod
    def boot(cls):
        cls.vsock = cls.session.path("vsock.sock")
        cls.api_path = cls.session.path("api.sock")
        cls.disk = cls.session.path("scratch.img")
        with open(cls.disk, "wb") as f:
            f.truncate(BLOCK_MIB << 20)
        cls.net = None
        if os.geteuid() == 0 and os.path.exists("/dev/net/tun"):
            run(["ip", "link", "del", TAP])
            for cmd in (["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                        ["ip", "addr", "add", HOST_IP + "/24", "dev", TAP],
                        ["ip", "link", "set", TAP, "up"]):
                res = run(cmd)
                if res.returncode != 0:
                    raise AssertionError("%s: %s" % (" ".join(cmd), res.stdout.decode(errors="replace")))
            cls.net = TAP
        cls.vm = cls.session.amber(initrd=True, vcpus=2, mem_mib=MEM_MIB, vsock=(3, cls.vsock),
                                   api_sock=cls.api_path, drives=[{"path": cls.disk}], net=cls.net)
        cls.vm.wait_for(harness.READY)
        U.wait_agent(cls.vsock)
        cls.api = U.Api(cls.api_path)
        t0 = time.monotonic()
        out = U.guest_sh(cls.vsock, "head -c %d /dev/urandom > %s && sha256sum %s"
                         % (HELD_MIB << 20, HELD, HELD), timeout=600)
        cls.held_sha = out.split()[0]
        harness.log("guest holds %d MiB in RAM, sha256 %s... (%.1f s to make and hash)"
                    % (HELD_MIB, cls.held_sha[:16], time.monotonic() - t0))
        if cls.net:
            U.guest_sh(cls.vsock, "ip addr add %s/24 dev eth0 && ip link set eth0 up" % GUEST_IP)

    @classmethod
    def drop_tap(cls):
        if getattr(cls, "net", None):
            run(["ip", "link", "del", TAP])

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "api"):
            cls.api.close()
        cls.session.close()
        cls.drop_tap()

    def setUp(self):
        U.arm_watchdog(600)
        self.addCleanup(U.disarm_watchdog)
        self.assertTrue(self.vm.alive(), "amber died during an earlier test\n%s" % self.vm.tail())

    def tearDown(self):
        if self.vm.alive() and self.api.call("GET", "/")[1].get("state") == "Paused":
            self.api.call("POST", "/resume")

    def call(self, method, url, want):
        status, reply = self.api.call(method, url)
        self.assertEqual(status, want, "%s %s answered %d %r" % (method, url, status, reply))
        return reply

    def sh(self, script, **kw):
        return U.guest_sh(self.vsock, script, **kw)

    def held_sha_now(self):
        return self.sh("sha256sum %s" % HELD, timeout=600).split()[0]

    def test_resident_memory(self):
        pid = self.vm.pid
        rss0 = U.guest_ram_rss_kib(pid, MEM_MIB)
        self.assertGreater(rss0, HELD_MIB * 1024, "the guest-RAM mapping (%d MiB) holds only %d KiB "
                           "although the guest keeps %d MiB in it: wrong mapping measured?"
                           % (MEM_MIB, rss0, HELD_MIB))
        hog = hog_size_mib()
        note = ""
        floor = rss0  # resident guest RAM only grows: nothing may take it away across a pause
        for cycle in range(MEM_CYCLES):
            self.call("POST", "/pause", 200)
            note = host_memory_pressure(hog)
            after = U.guest_ram_rss_kib(pid, MEM_MIB)
            self.assertGreaterEqual(after, floor, "cycle %d: amber's resident guest RAM shrank from "
                                    "%d to %d KiB across a pause under host memory pressure (%s)"
                                    % (cycle, floor, after, note))
            floor = after
            self.call("POST", "/resume", 200)
            # Hashing costs seconds in the test host: every cycle when there are few, else the
            # last one and every fifth.
            if MEM_CYCLES <= 5 or cycle % 5 == 4 or cycle == MEM_CYCLES - 1:
                self.assertEqual(self.held_sha_now(), self.held_sha, "cycle %d: the %d MiB the guest "
                                 "held in RAM changed across the pause" % (cycle, HELD_MIB))
        harness.log("%d cycles of pause + %d MiB host pressure (%s): guest-RAM rss %d -> %d KiB, "
                    "held data intact" % (MEM_CYCLES, hog, note, rss0,
                                          U.guest_ram_rss_kib(pid, MEM_MIB)))

    def test_tcp_across_pauses(self):
        if not self.net:
            self.skipTest("needs root and /dev/net/tun for a TAP")
        self.sh("rm -f /tmp/tcp.sha; setsid sh -c 'nc -l -p %d | sha256sum > /tmp/tcp.part && "
                "mv /tmp/tcp.part /tmp/tcp.sha' </dev/null >/dev/null 2>&1 &" % TCP_PORT)
        deadline = time.monotonic() + harness.scaled(30)
        while True:
            try:
                conn = socket.create_connection((GUEST_IP, TCP_PORT), timeout=10)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    self.fail("cannot reach the guest's nc on %s:%d: %s" % (GUEST_IP, TCP_PORT, e))
                time.sleep(0.3)
        stop = threading.Event()
        pauses, failures = [0], []

        def pauser():
            rng = random.Random(7)
            while not stop.is_set():
                time.sleep(rng.uniform(0.05, 0.3))
                for url in ("/pause", "/resume"):
                    st, body = self.api.call("POST", url)
                    if st != 200:
                        failures.append((url, st, body))
                    if url == "/pause":
                        pauses[0] += 1
                        time.sleep(rng.uniform(0.05, 0.3))

        t = threading.Thread(target=pauser, daemon=True)
        t.start()
        h = hashlib.sha256()
        block = os.urandom(1 << 20)
        t0 = time.monotonic()
        try:
            with conn:
                conn.settimeout(harness.scaled(60))
                for i in range(TCP_MIB):
                    chunk = i.to_bytes(8, "little") + block[8:]
                    h.update(chunk)
                    conn.sendall(chunk)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
        finally:
            stop.set()
            t.join(harness.scaled(30))
        got = self.sh("i=0; while [ ! -e /tmp/tcp.sha ] && [ $i -lt 600 ]; do usleep 100000; "
                      "i=$((i+1)); done; cat /tmp/tcp.sha", timeout=120).split()
        self.assertEqual(failures, [], "pause/resume calls failed during the stream")
        self.assertGreater(pauses[0], 2, "the stream ended before the pauses began")
        self.assertEqual(got[:1], [h.hexdigest()], "%d MiB host->guest over the TAP arrived "
                         "changed across %d pauses" % (TCP_MIB, pauses[0]))
        harness.log("%d MiB over TCP in %.1f s across %d pauses, sha256 matches"
                    % (TCP_MIB, time.monotonic() - t0, pauses[0]))

    def test_block_writes_in_flight(self):
        # Large O_DIRECT writes of the held data onto the scratch drive /dev/vda; pauses land while
        # the requests are with the device. The host reads the image file afterwards.
        self.sh("rm -f /tmp/dd.rc; setsid sh -c 'dd if=%s of=/dev/vda bs=4M count=%d "
                "oflag=direct 2>/tmp/dd.err; echo $? > /tmp/dd.rc' </dev/null >/dev/null 2>&1 &"
                % (HELD, BLOCK_MIB // 4))
        rng = random.Random(11)
        pauses = 0
        t0 = time.monotonic()
        while True:
            for _ in range(10):  # a burst between the (slow) checks whether dd has ended
                time.sleep(rng.uniform(0.0, 0.05))
                self.call("POST", "/pause", 200)
                pauses += 1
                time.sleep(rng.uniform(0.02, 0.1))
                self.call("POST", "/resume", 200)
            res = U.ctl_exec(self.vsock, "cat /tmp/dd.rc 2>/dev/null", timeout=60)
            if res.stdout.strip():
                break
            self.assertLess(time.monotonic() - t0, harness.scaled(120), "the O_DIRECT dd did not end")
        rc = res.stdout.decode().strip()
        self.assertEqual(rc, "0", "dd failed: %s" % self.sh("cat /tmp/dd.err"))
        with open(self.disk, "rb") as f:
            disk = f.read(BLOCK_MIB << 20)
        want = self.held_sha if BLOCK_MIB == HELD_MIB else self.sh(
            "head -c %d %s | sha256sum" % (BLOCK_MIB << 20, HELD)).split()[0]
        if hashlib.sha256(disk).hexdigest() != want:
            guest = self.sh("i=0; while [ $i -lt %d ]; do dd if=%s bs=1M skip=$i count=1 2>/dev/null"
                            " | sha256sum; i=$((i+1)); done" % (BLOCK_MIB, HELD)).split()[::2]
            bad = [i for i in range(BLOCK_MIB)
                   if hashlib.sha256(disk[i << 20:(i + 1) << 20]).hexdigest() != guest[i]]
            self.fail("after %d pauses during O_DIRECT writes, %d of %d MiB on the drive differ "
                      "from what the guest wrote (MiB %s)" % (pauses, len(bad), BLOCK_MIB, bad[:20]))
        back = self.sh("dd if=/dev/vda bs=4M count=%d iflag=direct 2>/dev/null | sha256sum"
                       % (BLOCK_MIB // 4), timeout=300).split()[0]
        self.assertEqual(back, want, "the guest reads back other data than the drive holds")
        harness.log("%d MiB of O_DIRECT writes across %d pauses in %.1f s: the image verifies"
                    % (BLOCK_MIB, pauses, time.monotonic() - t0))

    def check_state_is_real(self, when):
        """GET / must tell the truth: with a guest spinning, amber burns CPU exactly when it says
        Running. Returns (state, CPU seconds over 0.5 s)."""
        state = self.api.call("GET", "/")[1]["state"]
        self.assertIn(state, ("Paused", "Running"), when)
        cpu = vmm_cpu_s_over(self.vm.pid, 0.5)
        if state == "Paused":
            self.assertLess(cpu, 0.1, "%s: GET / says Paused, yet amber used %.2f s of CPU in 0.5 s "
                            "with a spinning guest: a vCPU runs" % (when, cpu))
        else:
            self.assertGreater(cpu, 0.15, "%s: GET / says Running, yet amber used only %.2f s of CPU "
                               "in 0.5 s with a spinning guest: the vCPUs are parked" % (when, cpu))
        return state, cpu

    def test_two_clients_storm(self):
        calls = [("POST", "/pause", None), ("POST", "/resume", None),
                 ("PATCH", "/vm", {"state": "Paused"}), ("PATCH", "/vm", {"state": "Resumed"})]
        bad, counts = [], {}
        lock = threading.Lock()
        apis = [U.Api(self.api_path), U.Api(self.api_path)]
        for api in apis:
            self.addCleanup(api.close)

        def client(k, n, rng, together=None):
            try:
                for _ in range(n):
                    method, url, body = rng.choice(calls)
                    if together is not None:
                        together.wait(harness.scaled(30))
                    st, reply = apis[k].call(method, url, body)
                    with lock:
                        counts[st] = counts.get(st, 0) + 1
                        if st not in OK_STATUSES or (st == 409 and "fault_message" not in reply):
                            bad.append((method, url, body, st, reply))
            except (OSError, threading.BrokenBarrierError) as e:
                with lock:
                    bad.append(("client %d" % k, str(e)))

        def both(n, rngs, together=None):
            threads = [threading.Thread(target=client, args=(k, n, rngs[k], together), daemon=True)
                       for k in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(harness.scaled(300))
            self.assertFalse(any(t.is_alive() for t in threads), "a storm client hung")
            self.assertEqual(bad, [], "replies outside 200/204/409 (or a 409 without fault_message)")

        # A spinning guest makes "paused" measurable: amber's CPU time stands still only then.
        self.sh("rm -f /tmp/spin.stop; setsid sh -c 'while [ ! -e /tmp/spin.stop ]; do :; done' "
                "</dev/null >/dev/null 2>&1 &")
        self.addCleanup(lambda: self.vm.alive() and self.sh("touch /tmp/spin.stop"))
        rngs = [random.Random(1), random.Random(2)]
        both(STORM_CALLS, rngs)  # free-running: the calls interleave however they land
        states = [self.check_state_is_real("after the storm")[0]]
        # Rounds aimed at the race: from Paused, one client resumes while the other pauses, both
        # released at the same instant. A resume and a pause in one loop turn is where a deferred
        # release of the vCPUs can overtake the pause (GET / then says Paused while they run).
        together = threading.Barrier(2)
        race = [types.SimpleNamespace(choice=lambda _c, call=call: call) for call in calls[1::-1]]
        for i in range(STORM_ROUNDS):
            self.assertIn(self.api.call("POST", "/pause")[0], (200, 409))
            both(1, race, together)
            states.append(self.check_state_is_real("round %d" % i)[0])
        state = states[-1]
        st, _ = self.api.call("POST", "/resume")
        self.assertEqual(st, 200 if state == "Paused" else 409,
                         "GET / said %s, yet POST /resume answered %d" % (state, st))
        self.assertEqual(self.api.call("GET", "/")[1]["state"], "Running")
        self.assertEqual(self.sh("echo alive"), "alive\n", "the guest does not run after the storm")
        harness.log("two clients x %d calls, then %d synchronized rounds: replies %r; states "
                    "checked against amber's CPU: %d Paused, %d Running"
                    % (STORM_CALLS, STORM_ROUNDS, counts, states.count("Paused"),
                       states.count("Running")))

    def test_zz_pause_at_poweroff(self):
        """Last in the class: the guest powers itself off while pauses and resumes hammer it."""
        api = U.Api(self.api_path, timeout=15)
        self.addCleanup(api.close)
        self.sh("setsid sh -c 'sleep 0.3; poweroff -f' </dev/null >/dev/null 2>&1 &")
        t0 = time.monotonic()
        statuses, cycles = {}, 0
        deadline = t0 + harness.scaled(120)
        while self.vm.alive():
            self.assertLess(time.monotonic(), deadline, "amber did not exit after the guest's "
                            "power-off under pauses\n%s" % self.vm.tail())
            for url in ("/pause", "/resume"):
                try:
                    st, reply = api.call("POST", url)
                except (OSError, http.client.HTTPException) as e:  # amber exited mid-call
                    try:
                        self.vm.proc.wait(harness.scaled(10))
                    except subprocess.TimeoutExpired:
                        self.fail("the API failed (%s) and amber is still alive\n%s"
                                  % (e, self.vm.tail()))
                    break
                statuses[st] = statuses.get(st, 0) + 1
                self.assertIn(st, OK_STATUSES, "%s at power-off answered %d %r\n%s"
                              % (url, st, reply, self.vm.tail()))
                # Back to back: a pause is then in flight (its vCPU kicks take milliseconds here)
                # for much of the time, so the power-off often lands inside one, and the VM is
                # paused when amber tears it down.
            cycles += 1
        rc = self.vm.wait_exit()
        self.assertEqual(rc, 0, "amber exited %s after the guest powered off under pauses\n%s"
                         % (rc, self.vm.tail()))
        harness.log("guest power-off under %d pause/resume cycles: replies %r, exit 0 %.1f s after "
                    "the power-off was started" % (cycles, statuses, time.monotonic() - t0))


class TestPauseEdgesBoot(harness.AmberTestCase):
    def setUp(self):
        super().setUp()
        U.arm_watchdog(600)
        self.addCleanup(U.disarm_watchdog)

    def test_pause_during_boot(self):
        api_path, vsock = self.path("api.sock"), self.path("vsock.sock")
        vm = self.amber(initrd=True, vcpus=2, mem_mib=256, api_sock=api_path, vsock=(3, vsock))
        U.wait_for_path(api_path, vm=vm)
        api = U.Api(api_path)
        self.addCleanup(api.close)
        st, reply = api.call("POST", "/pause")
        self.assertEqual(st, 200, "pause right after start: %d %r" % (st, reply))
        n0 = len(vm.lines)
        cpu = vmm_cpu_s_over(vm.pid, 1.0)
        self.assertLess(cpu, 0.1, "amber used %.2f s of CPU in 1 s while paused during boot: the "
                        "guest runs" % cpu)
        self.assertEqual(vm.lines[n0:], [], "the guest printed while paused during boot")
        self.assertFalse(any(re.search(harness.READY, ln) for ln in vm.lines),
                         "the guest became ready while paused")
        self.assertEqual(api.call("POST", "/resume")[0], 200)
        # More pauses while the kernel and init come up (the APs start, devices probe), up to
        # 20, then the guest must still come up and its agent answer.
        pauses = 1
        deadline = time.monotonic() + harness.scaled(120)
        while pauses <= 20 and not any(re.search(harness.READY, ln) for ln in vm.lines):
            self.assertLess(time.monotonic(), deadline, "no ready line\n%s" % vm.tail())
            self.assertTrue(vm.alive(), "amber died during boot pauses\n%s" % vm.tail())
            time.sleep(0.3)
            st, reply = api.call("POST", "/pause")
            self.assertEqual(st, 200, "pause %d during boot: %d %r" % (pauses, st, reply))
            pauses += 1
            time.sleep(0.1)
            self.assertEqual(api.call("POST", "/resume")[0], 200)
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)
        self.assertEqual(U.guest_sh(vsock, "echo alive"), "alive\n")
        # For comparison with a boot that hangs: what a healthy boot's vCPUs look like (amber's
        # userspace exits per vCPU, KVM's own counters, MP state).
        vcpus = [ln for ln in vm.state_report().splitlines() if re.search(r"state: vcpu\d", ln)]
        harness.log("%d pauses during boot; ready after %.1f s\n    %s"
                    % (pauses, vm.elapsed_s(), "\n    ".join(vcpus)))


@harness.long_tier("8 spinning vCPUs paused 100 times on the test host's 2 CPUs: test_pause's 2-vCPU pause tests run")
class TestPauseEdgesEightVcpus(harness.AmberTestCase):
    def test_eight_spinning_vcpus(self):
        U.arm_watchdog(600)
        self.addCleanup(U.disarm_watchdog)
        api_path, vsock = self.path("api.sock"), self.path("vsock.sock")
        vm = self.amber(initrd=True, vcpus=8, mem_mib=256, api_sock=api_path, vsock=(3, vsock))
        vm.wait_for(harness.READY, timeout=180)
        U.wait_agent(vsock, timeout=120)
        api = U.Api(api_path)
        self.addCleanup(api.close)
        # Each spinner, pinned to its CPU, counts its own loops into /run/spinN every 1,000:
        # the direct sign that the vCPU still runs it.
        U.guest_sh(vsock, "for i in 0 1 2 3 4 5 6 7; do setsid taskset -c $i sh -c "
                   "'n=0; while :; do n=$((n+1)); case $n in *000) echo $n >/run/spin'$i';; "
                   "esac; done' </dev/null >/dev/null 2>&1 & done")

        def spins():
            # A file caught between its truncation and its write reads empty: read again.
            for _ in range(5):
                out = U.guest_sh(vsock, "for i in 0 1 2 3 4 5 6 7; do echo $(cat /run/spin$i "
                                 "2>/dev/null); done").split("\n")[:8]
                if all(x.strip().isdigit() for x in out):
                    return [int(x) for x in out]
                time.sleep(0.1)
            return [int(x) if x.strip().isdigit() else -1 for x in out]

        steal = {}

        def busy_ticks():
            # user + system per CPU; the steal column is kept aside for the log below: a
            # guest tick that finds more stolen time than a tick is charged to steal alone
            # (8 vCPUs on the test host's 2 CPUs lose about 3/4 of their time).
            out = U.guest_sh(vsock, "cat /proc/stat")
            rows = [[int(x) for x in m.group(1).split()] for m in
                    re.finditer(r"^cpu\d+ ([\d ]+)$", out, re.M)]
            steal[len(steal)] = [r[7] if len(r) > 7 else 0 for r in rows]
            return [r[0] + r[2] for r in rows]

        rng = random.Random(3)
        lat = []
        for i in range(SPIN_PAUSES):
            t0 = time.monotonic()
            st, reply = api.call("POST", "/pause")
            lat.append(time.monotonic() - t0)
            self.assertEqual(st, 200, "pause %d of 8 spinning vCPUs: %d %r\n%s"
                             % (i, st, reply, vm.tail()))
            time.sleep(rng.uniform(0, 0.02))
            st, reply = api.call("POST", "/resume")
            self.assertEqual(st, 200, "resume %d: %d %r" % (i, st, reply))
            time.sleep(rng.uniform(0, 0.02))
        before, spin0 = busy_ticks(), spins()
        time.sleep(2)
        after, spin1 = busy_ticks(), spins()
        self.assertEqual(len(after), 8, "the guest lists %d CPUs" % len(after))
        idle = [i for i in range(8) if spin1[i] <= spin0[i] or spin0[i] < 0]
        no_ticks = [i for i in range(8) if after[i] <= before[i]]
        if idle:
            # Tell apart a vCPU that no longer runs, one that runs but takes no timer ticks,
            # and a spinner that is gone or elsewhere: the guest's per-CPU timer interrupts
            # and steal time two seconds apart, where each spinner is, and amber's per-vCPU
            # KVM counters (irq_injections, exits) twice.
            probe = ("grep -E '^ *(LOC|CAL|RES|TLB)' /proc/interrupts; grep '^cpu' /proc/stat; "
                     "for p in $(pgrep -f 'n=0; while'); do echo \"spinner $p: $(cut -d' ' -f3,14,15,39 "
                     "/proc/$p/stat)\"; done")
            first, report1 = U.guest_sh(vsock, probe), vm.state_report()
            time.sleep(2)
            second, report2 = U.guest_sh(vsock, probe), vm.state_report()
            self.fail("vCPUs %s no longer run their spinner after %d pauses (loops %s -> %s; "
                      "user+system %s -> %s, steal %s -> %s)\n"
                      "--- guest, then 2 s later ---\n%s\n%s%s%s"
                      % (idle, SPIN_PAUSES, spin0, spin1, before, after, steal[0], steal[1],
                         first, second, report1, report2))
        lat.sort()
        # The tick-based figure the test used to judge by, for the record: a CPU whose spinner
        # loops on may still gain no user+system tick, its ticks all charged to steal.
        harness.log("%d pauses of 8 spinning vCPUs: pause latency median %.1f ms, max %.1f ms; "
                    "in 2 s each spinner looped %s times, each CPU gained user+system %s and "
                    "steal %s (USER_HZ ticks); no user+system tick on CPUs %s"
                    % (SPIN_PAUSES, lat[len(lat) // 2] * 1e3, lat[-1] * 1e3,
                       [a - b for a, b in zip(spin1, spin0)],
                       [a - b for a, b in zip(after, before)],
                       [a - b for a, b in zip(steal[1], steal[0])], no_ticks))


if __name__ == "__main__":
    unittest.main()
