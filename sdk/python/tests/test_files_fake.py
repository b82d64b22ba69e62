"""sbx.files against tests/fake_amber.py (a real amber-agent on a Unix socket, so "guest" paths
are this host's, under a temporary directory): streaming, metadata, bad input, bounds."""
import io
import os
import shutil
import sys
import tempfile
import tracemalloc
import unittest

from fakeenv import AGENT, FAKE, HERE, REPO, SDK, needs_agent  # noqa: E402,F401 (puts the SDK on sys.path)

from amber import (SandboxClientError, SandboxError, SandboxFileNotFoundError,  # noqa: E402
                   SandboxFileTypeError, files, proto)

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


class TestFiles(fakeenv.SharedSandboxCase):

    def setUp(self):
        self.g = tempfile.mkdtemp(prefix="amber-guest-")
        self.addCleanup(shutil.rmtree, self.g, True)
        self.f = self.sbx.files

    def test_text_bytes_file_object_and_iterable(self):
        self.assertEqual(self.f.write(self.g + "/t", "héllo").size, 6)
        self.assertEqual(self.f.read(self.g + "/t"), "héllo")
        self.assertEqual(self.f.write(self.g + "/b", io.BytesIO(b"\0\1" * 70000), mode=0o600).size, 140000)
        self.assertEqual(self.f.read(self.g + "/b", format="bytes"), b"\0\1" * 70000)
        self.assertEqual(os.stat(self.g + "/b").st_mode & 0o7777, 0o600)
        self.assertEqual(self.f.write(self.g + "/i", (b"ab" for _ in range(3))).size, 6)
        self.assertEqual(self.f.read(self.g + "/i", format="bytes"), b"ababab")

    def test_streams_hold_no_whole_file(self):
        size = 16 << 20
        tracemalloc.start()
        try:  # fresh chunks, so that keeping them would show
            self.f.write(self.g + "/big", (bytes([65 + i % 26]) * 65536 for i in range(size // 65536)))
            _cur, peak_up = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            total = 0
            for piece in self.f.read(self.g + "/big", format="stream"):
                self.assertLessEqual(len(piece), 65536)
                total += len(piece)
            _cur, peak_down = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual((total, os.path.getsize(self.g + "/big")), (size, size))
        self.assertLess(peak_up, 4 << 20, "write buffered %d bytes" % peak_up)
        self.assertLess(peak_down, 4 << 20, "read buffered %d bytes" % peak_down)

    def test_read_is_bounded(self):
        with open(self.g + "/m", "wb") as fh:
            fh.write(b"m" * 100000)
        with self.assertRaises(SandboxClientError) as cm:
            self.f.read(self.g + "/m", format="bytes", max_size=1000)
        self.assertEqual(cm.exception.status, 413)
        self.assertIn("max_size=1000", str(cm.exception))

    def test_metadata_list_rename_remove(self):
        self.assertTrue(self.f.make_dir(self.g + "/d/e/f", mode=0o750))
        self.assertFalse(self.f.make_dir(self.g + "/d/e/f"))
        self.assertEqual(os.stat(self.g + "/d/e/f").st_mode & 0o7777, 0o750)
        outside = tempfile.mkdtemp(prefix="amber-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        open(os.path.join(outside, "keep"), "w").close()
        os.symlink(outside, self.g + "/d/link")
        self.f.write(self.g + "/d/x.txt", "xx")
        os.utime(self.g + "/d/x.txt", (1700000000, 1700000000))
        info = self.f.get_info(self.g + "/d/x.txt")
        self.assertEqual((info.name, info.type, info.size, info.mode, info.mtime), ("x.txt", "file", 2, 0o644, 1700000000.0))
        self.assertEqual(self.f.get_info(self.g + "/d").type, "dir")
        self.assertEqual([(e.name, e.type) for e in self.f.list(self.g + "/d")],
                         [("e", "dir"), ("link", "symlink"), ("x.txt", "file")])
        deep = [e.path[len(self.g):] for e in self.f.list(self.g + "/", depth=16)]
        self.assertEqual(deep, ["/d", "/d/e", "/d/e/f", "/d/link", "/d/x.txt"], "followed the symlink?")
        self.assertEqual([e.path[len(self.g):] for e in self.f.list(self.g, depth=2)], ["/d", "/d/e", "/d/link", "/d/x.txt"])
        self.assertEqual(self.f.rename(self.g + "/d/x.txt", self.g + "/y.txt").name, "y.txt")
        self.assertFalse(self.f.exists(self.g + "/d/x.txt"))
        self.assertTrue(self.f.exists(self.g + "/y.txt"))
        self.f.remove(self.g + "/d")
        self.assertFalse(os.path.exists(self.g + "/d"))
        self.assertTrue(os.path.exists(os.path.join(outside, "keep")), "remove followed a symlink")

    def test_bad_input_each_one_error(self):
        os.mkdir(self.g + "/dir")
        open(self.g + "/file", "w").close()
        cases = [
            (SandboxFileNotFoundError, "no such file", lambda: self.f.read(self.g + "/missing")),
            (SandboxFileNotFoundError, "no such file", lambda: self.f.get_info(self.g + "/missing")),
            (SandboxFileNotFoundError, "no such file", lambda: self.f.remove(self.g + "/missing")),
            (SandboxFileNotFoundError, "no such file", lambda: self.f.rename(self.g + "/missing", self.g + "/z")),
            (SandboxFileNotFoundError, "no such file", lambda: self.f.list(self.g + "/missing")),
            (SandboxFileTypeError, "is a directory", lambda: self.f.read(self.g + "/dir")),
            (SandboxFileTypeError, "is a directory", lambda: self.f.write(self.g + "/dir", "x")),
            (SandboxFileTypeError, "is not a directory", lambda: self.f.list(self.g + "/file")),
            (SandboxFileTypeError, "exists and is not a directory", lambda: self.f.make_dir(self.g + "/file")),
            (SandboxClientError, "absolute", lambda: self.f.read("relative")),
            (SandboxClientError, "depth must be", lambda: self.f.list(self.g, depth=0)),
            (SandboxClientError, "depth must be", lambda: self.f.list(self.g, depth=17)),
            (SandboxClientError, "mode must be", lambda: self.f.write(self.g + "/m", "x", mode=0o10000)),
            (SandboxClientError, "format must be", lambda: self.f.read(self.g + "/file", format="json")),
        ]
        for exc, text, call in cases:
            with self.assertRaises(exc, msg=text) as cm:
                call()
            self.assertIn(text, str(cm.exception))
        self.assertFalse(self.f.exists(self.g + "/missing"))

    def test_listing_is_bounded(self):
        for i in range(5):
            open("%s/f%d" % (self.g, i), "w").close()
        keep = files.MAX_ENTRIES
        files.MAX_ENTRIES = 3
        try:
            with self.assertRaises(SandboxError) as cm:
                self.f.list(self.g)
        finally:
            files.MAX_ENTRIES = keep
        self.assertIn("more than 3 entries", str(cm.exception))


class TestGuestFieldsAreBounded(unittest.TestCase):
    def test_entry_info_masks_and_maps(self):
        t = proto.Tlvs(proto.tlv(proto.TAG_TYPE, 99) + proto.tlv(proto.TAG_MODE, 0o177777)
                       + proto.tlv(proto.TAG_SIZE, 5) + proto.tlv(proto.TAG_MTIME_NS, 1500000000))
        e = files.EntryInfo("/a/../b", t)
        self.assertEqual((e.type, e.mode, e.size, e.mtime, e.name), ("other", 0o7777, 5, 1.5, "b"))


if __name__ == "__main__":
    unittest.main()
