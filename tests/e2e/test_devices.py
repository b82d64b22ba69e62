"""virtio devices end to end: block writes survive, a read-only drive holds, entropy flows, TAP networking works.

Two guest boots, each driven by an /amber-run.sh put into a sparse copy of the rootfs:
  - storage and entropy: the guest writes 64 MiB of random bytes to its root drive, checks a second
    drive marked read-only refuses writes, and reads /dev/hwrng; the host then reads the file back
    out of the image with debugfs and compares sha256s;
  - network: a TAP in the test host, pings both ways, then 16 MiB guest->host and 100 MiB
    host->guest over TCP (busybox nc), with sha256s compared.
"""
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BLOCK_FILE = "/amber-blk-test.bin"
BLOCK_BYTES = 64 << 20
RO_BYTES = 4 << 20
RO_ID = "ro0"

STORAGE_SCRIPT = r"""
echo "amber-step: writing %(size)d bytes to %(file)s"
head -c %(size)d /dev/urandom >%(file)s
echo "amber-blk-size: $(wc -c <%(file)s)"
echo "amber-blk-sha256: $(sha256sum %(file)s | cut -d' ' -f1)"
sync
echo "amber-ro-flag: $(cat /sys/block/vdb/ro 2>&1)"
echo "amber-ro-serial: $(cat /sys/block/vdb/serial 2>&1)"
echo "amber-ro-sha256: $(sha256sum /dev/vdb | cut -d' ' -f1)"
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync 2>/tmp/dd.err; then
    echo "amber-ro-write: accepted"
else
    echo "amber-ro-write: refused ($(head -n1 /tmp/dd.err))"
fi
echo "amber-rng-current: $(cat /sys/class/misc/hw_random/rng_current 2>&1)"
echo "amber-rng-hex: $(head -c 64 /dev/hwrng | od -An -v -tx1 | tr -d ' \n')"
sync
""" % {"size": BLOCK_BYTES, "file": BLOCK_FILE}

# host->guest carries the 100 MiB; guest->host is smaller because the guest must also make its data,
# and /dev/urandom plus busybox sha256sum run slowly in a nested guest under TCG.
NET_RX_BYTES = 100 << 20
NET_TX_BYTES = 16 << 20
NET_TAP = "amber-e2e-tap0"
NET_HOST = "10.0.77.1"
NET_GUEST = "10.0.77.2"
PORT_TO_GUEST = 5001
PORT_TO_HOST = 5002

NET_SCRIPT = r"""
ip addr add %(guest)s/24 dev eth0
ip link set eth0 up
echo "amber-net-link: $(cat /sys/class/net/eth0/operstate) $(cat /sys/class/net/eth0/address)"
if ping -c 3 -W 5 %(host)s >/tmp/ping.out 2>&1; then
    echo "amber-ping-host: ok"
else
    echo "amber-ping-host: failed"
    cat /tmp/ping.out
fi
head -c %(tx_size)d /dev/urandom >/tmp/tx.bin
echo "amber-tx-sha256: $(sha256sum /tmp/tx.bin | cut -d' ' -f1)"
nc %(host)s %(tx)d </tmp/tx.bin
echo "amber-tx-done: $?"
rm -f /tmp/tx.bin
echo "amber-net: listening on %(rx)d"
echo "amber-rx-sha256: $(nc -l -p %(rx)d | sha256sum | cut -d' ' -f1)"
""" % {"guest": NET_GUEST, "host": NET_HOST, "rx": PORT_TO_GUEST, "tx": PORT_TO_HOST,
       "tx_size": NET_TX_BYTES}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(argv, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kw)


class TestStorageAndEntropy(unittest.TestCase):
    """One boot: root drive (rw), a read-only second drive and --entropy; each test reads its part."""

    @classmethod
    def setUpClass(cls):
        cls.session = harness.Session(cls.__module__ + "." + cls.__name__)
        try:
            cls.boot()
        except BaseException:
            cls.session.close()
            raise

    @classmethod
    def boot(cls):
        s = cls.session
        cls.root = s.rootfs_copy("root.ext4", files={"/amber-run.sh": STORAGE_SCRIPT})
        cls.ro = s.path("ro.img")
        with open(cls.ro, "wb") as f:
            f.write(os.urandom(RO_BYTES))
        cls.ro_sha_before = sha256_file(cls.ro)
        harness.log("storage boot: root drive, read-only drive %s, --entropy" % RO_ID)
        vm = s.amber(initrd=True, mem_mib=256,
                     drives=[{"path": cls.root, "root": True}, {"path": cls.ro, "ro": True, "id": RO_ID}],
                     extra=["--entropy"])
        cls.vm = vm
        cls.boot_error = None
        try:
            vm.wait_for(harness.READY)
            vm.wait_for(r"^amber-run: exit \d+$", timeout=300)
            cls.rc = vm.wait_exit()
        except AssertionError as e:
            cls.boot_error = str(e)
            vm.kill()
        harness.log("storage boot: done after %.1f s" % vm.elapsed_s())
        cls.out = vm.output()

    @classmethod
    def tearDownClass(cls):
        cls.session.close()

    def setUp(self):
        if self.boot_error:
            self.fail("the storage guest did not finish its script:\n" + self.boot_error)

    def line(self, key):
        m = re.search(r"^%s: (.*)$" % re.escape(key), self.out, re.M)
        self.assertIsNotNone(m, "the guest printed no %r line\n%s" % (key, self.vm.tail()))
        return m.group(1).strip()

    def test_block_writes_survive(self):
        self.assertEqual(self.rc, 0, "amber exited %s\n%s" % (self.rc, self.vm.tail()))
        self.assertEqual(self.line("amber-blk-size"), str(BLOCK_BYTES),
                         "the guest wrote a short file\n" + self.vm.tail())
        guest_sha = self.line("amber-blk-sha256")
        # The guest synced but never unmounted: replay the journal (and check the filesystem) first.
        fsck = run(["e2fsck", "-fy", self.root])
        self.assertIn(fsck.returncode, (0, 1), "e2fsck on the image after the guest wrote it: status %d\n%s"
                      % (fsck.returncode, fsck.stdout.decode(errors="replace")[-3000:]))
        out = self.session.path("dumped.bin")
        dump = run(["debugfs", "-R", "dump %s %s" % (BLOCK_FILE, out), self.root])
        self.assertTrue(os.path.exists(out), "debugfs could not dump %s from the image: %s"
                        % (BLOCK_FILE, dump.stdout.decode(errors="replace")))
        self.assertEqual(os.path.getsize(out), BLOCK_BYTES, "the file in the image has the wrong size\n"
                         + self.vm.tail())
        self.assertEqual(sha256_file(out), guest_sha,
                         "the file read back from the image differs from what the guest wrote\n"
                         + self.vm.tail())

    def test_read_only_drive_holds(self):
        self.assertEqual(self.line("amber-ro-flag"), "1", "the guest does not see vdb as read-only\n"
                         + self.vm.tail())
        self.assertEqual(self.line("amber-ro-serial"), RO_ID, "GET_ID did not return the drive id\n"
                         + self.vm.tail())
        self.assertEqual(self.line("amber-ro-sha256"), self.ro_sha_before,
                         "the guest read different bytes from the read-only drive\n" + self.vm.tail())
        self.assertTrue(self.line("amber-ro-write").startswith("refused"),
                        "a write to the read-only drive succeeded inside the guest\n" + self.vm.tail())
        self.assertEqual(sha256_file(self.ro), self.ro_sha_before,
                         "the read-only image changed on the host\n" + self.vm.tail())

    def test_entropy(self):
        self.assertIn("virtio_rng", self.line("amber-rng-current"),
                      "the guest's hw_random is not virtio-rng\n" + self.vm.tail())
        hexed = self.line("amber-rng-hex")
        self.assertRegex(hexed, r"^[0-9a-f]{128}$", "/dev/hwrng did not give 64 bytes\n" + self.vm.tail())
        self.assertNotEqual(hexed, "0" * 128, "/dev/hwrng gave only zeros\n" + self.vm.tail())


class Receiver(threading.Thread):
    """Accepts one TCP connection on the listening socket and hashes everything until EOF."""

    def __init__(self, sock, timeout_s):
        super().__init__(daemon=True)
        self.sock = sock
        self.timeout_s = timeout_s
        self.sha = None
        self.nbytes = 0
        self.error = None

    def run(self):
        try:
            self.sock.settimeout(self.timeout_s)
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(self.timeout_s)
                h = hashlib.sha256()
                while True:
                    data = conn.recv(1 << 20)
                    if not data:
                        break
                    h.update(data)
                    self.nbytes += len(data)
                self.sha = h.hexdigest()
        except OSError as e:
            self.error = "receiver: %s after %d bytes" % (e, self.nbytes)


class TestNetwork(harness.AmberTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
            self.skipTest("needs root and /dev/net/tun to create a TAP")
        run(["ip", "link", "del", NET_TAP])
        for cmd in (["ip", "tuntap", "add", "dev", NET_TAP, "mode", "tap"],
                    ["ip", "addr", "add", NET_HOST + "/24", "dev", NET_TAP],
                    ["ip", "link", "set", NET_TAP, "up"]):
            res = run(cmd)
            self.assertEqual(res.returncode, 0, "%s: %s" % (" ".join(cmd), res.stdout.decode(errors="replace")))
        self.addCleanup(run, ["ip", "link", "del", NET_TAP])

    def ping_argv(self, addr):
        ping = shutil.which("ping")
        base = [ping] if ping else ["busybox", "ping"]
        return base + ["-c", "3", "-W", "5", addr]

    def send_to_guest(self, vm, timeout_s):
        """Connects to the guest's nc (retrying while it starts) and sends NET_RX_BYTES; returns the sha256."""
        deadline = time.monotonic() + harness.scaled(30)
        while True:
            try:
                conn = socket.create_connection((NET_GUEST, PORT_TO_GUEST), timeout=10)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    self.fail("cannot connect to the guest's nc on %s:%d: %s\n%s"
                              % (NET_GUEST, PORT_TO_GUEST, e, vm.tail()))
                time.sleep(0.5)
        h = hashlib.sha256()
        block = os.urandom(1 << 20)
        sent = 0
        with conn:
            # A transfer that makes no progress for a minute is stalled: say where it stopped
            # and what amber sees, rather than wait for the test's watchdog.
            conn.settimeout(min(timeout_s, harness.scaled(60)))
            try:
                for i in range(NET_RX_BYTES >> 20):
                    # Vary every block cheaply so the stream is not periodic.
                    chunk = i.to_bytes(8, "little") + block[8:]
                    h.update(chunk)
                    conn.sendall(chunk)
                    sent += len(chunk)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
            except OSError as e:
                self.fail("host->guest TCP failed after %d bytes: %s\n%s%s"
                          % (sent, e, vm.tail(), vm.state_report()))
        return h.hexdigest()

    def test_tap_ping_and_tcp(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((NET_HOST, PORT_TO_HOST))
        listener.listen(1)
        self.addCleanup(listener.close)
        timeout_s = harness.scaled(300)
        # Each transfer takes 5-15 s in the test host: a minute without the next line is a
        # stall, reported (with amber's state) well before the test's 300 s watchdog.
        stall_s = harness.scaled(60)
        recv = Receiver(listener, timeout_s)
        recv.start()

        root = self.rootfs_copy("net.ext4", files={"/amber-run.sh": NET_SCRIPT})
        harness.log("network boot: --net tap=%s" % NET_TAP)
        vm = self.amber(initrd=True, mem_mib=256, vcpus=2, drives=[{"path": root, "root": True}],
                        net=NET_TAP)
        vm.wait_for(harness.READY)
        m = vm.wait_for(r"^amber-ping-host: (\w+)$", timeout=60)
        self.assertEqual(m.group(1), "ok", "the guest cannot ping the host over the TAP\n" + vm.tail())

        t0 = time.monotonic()
        m = vm.wait_for(r"^amber-tx-sha256: (\S*)$", timeout=stall_s)
        tx_sha = m.group(1)
        try:
            m = vm.wait_for(r"^amber-tx-done: (\d+)$", timeout=stall_s)
        except AssertionError as e:
            raise AssertionError("guest->host TCP: %d of %d bytes arrived\n%s"
                                 % (recv.nbytes, NET_TX_BYTES, e)) from None
        recv.join(timeout_s)
        self.assertIsNone(recv.error, "%s\n%s" % (recv.error, vm.tail()))
        self.assertEqual(m.group(1), "0", "the guest's nc failed sending\n" + vm.tail())
        self.assertEqual(recv.nbytes, NET_TX_BYTES, "guest->host: %d bytes arrived, not %d\n%s"
                         % (recv.nbytes, NET_TX_BYTES, vm.tail()))
        self.assertEqual(recv.sha, tx_sha, "guest->host data arrived changed\n" + vm.tail())
        harness.log("guest->host %d MiB in %.1f s" % (NET_TX_BYTES >> 20, time.monotonic() - t0))

        vm.wait_for(r"^amber-net: listening", timeout=60)
        ping = run(self.ping_argv(NET_GUEST), timeout=60)
        self.assertEqual(ping.returncode, 0, "the host cannot ping the guest: %s\n%s"
                         % (ping.stdout.decode(errors="replace"), vm.tail()))

        t0 = time.monotonic()
        sent_sha = self.send_to_guest(vm, timeout_s)
        m = vm.wait_for(r"^amber-rx-sha256: (\S*)$", timeout=stall_s)
        self.assertEqual(m.group(1), sent_sha, "100 MiB host->guest arrived changed\n" + vm.tail())
        harness.log("host->guest %d MiB in %.1f s" % (NET_RX_BYTES >> 20, time.monotonic() - t0))

        vm.wait_for(r"^amber-run: exit \d+$", timeout=60)
        rc = vm.wait_exit()
        self.assertEqual(rc, 0, "amber exited %s after the network run\n%s" % (rc, vm.tail()))
        harness.log("network boot: done after %.1f s" % vm.elapsed_s())


if __name__ == "__main__":
    unittest.main()
