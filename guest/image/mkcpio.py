#!/usr/bin/env python3
"""Writes a gzip'd newc cpio archive of a directory, owned by root, with extra device nodes.

usage: mkcpio.py DIR OUT.cpio.gz [--dev PATH:c|b:MAJOR:MINOR]...
Device nodes are added from the command line so that no root-only mknod is needed at build time.
"""
import gzip
import os
import stat
import sys


def header(ino, mode, nlink, mtime, size, rdev_major, rdev_minor, name):
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev_major, rdev_minor, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % v for v in fields)


def pad4(n):
    return b"\0" * ((4 - n % 4) % 4)


def entry(out, ino, name, mode, data=b"", nlink=1, rdev=(0, 0), mtime=0):
    name_b = name.encode()
    hdr = header(ino, mode, nlink, mtime, len(data), rdev[0], rdev[1], name_b)
    out.write(hdr + name_b + b"\0")
    out.write(pad4(len(hdr) + len(name_b) + 1))
    out.write(data)
    out.write(pad4(len(data)))


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    root, dest, rest = args[0], args[1], args[2:]
    devs = []
    while rest:
        if rest[0] != "--dev" or len(rest) < 2:
            sys.exit(__doc__)
        path, kind, major, minor = rest[1].split(":")
        devs.append((path.lstrip("/"), kind, int(major), int(minor)))
        rest = rest[2:]

    tmp = dest + ".tmp"
    ino = 1
    # mtime 0 and sorted names keep the archive reproducible.
    with gzip.GzipFile(tmp, "wb", compresslevel=6, mtime=0) as out:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                st = os.lstat(full)
                perm = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    entry(out, ino, rel, stat.S_IFLNK | 0o777, os.readlink(full).encode())
                elif stat.S_ISDIR(st.st_mode):
                    entry(out, ino, rel, stat.S_IFDIR | perm, nlink=2)
                elif stat.S_ISREG(st.st_mode):
                    with open(full, "rb") as f:
                        entry(out, ino, rel, stat.S_IFREG | perm, f.read())
                else:
                    sys.exit("mkcpio.py: unsupported file type: %s" % full)
                ino += 1
        for path, kind, major, minor in devs:
            mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600
            entry(out, ino, path, mode, rdev=(major, minor))
            ino += 1
        entry(out, 0, "TRAILER!!!", 0)
    os.replace(tmp, dest)


if __name__ == "__main__":
    main()
