#!/usr/bin/env python3
"""Extracts the ELF vmlinux from a bzImage and checks it carries a PVH entry (Xen ELF note 18)."""
import lzma
import os
import shutil
import struct
import subprocess
import sys
import zlib

XEN_ELFNOTE_PHYS32_ENTRY = 18


def payload(bz):
    """Returns the compressed kernel payload located through the boot protocol header."""
    if bz[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS magic)")
    version = struct.unpack_from("<H", bz, 0x206)[0]
    if version < 0x208:
        raise ValueError("boot protocol %#x has no payload_offset" % version)
    setup_sects = bz[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    off, length = struct.unpack_from("<II", bz, 0x248)
    start = pm_start + off
    if start + length > len(bz) or length < 8:
        raise ValueError("payload %#x+%#x outside the file" % (start, length))
    return bz[start:start + length]


def run_tool(argv, data):
    if shutil.which(argv[0]) is None:
        raise RuntimeError("%s is needed to decompress this kernel" % argv[0])
    res = subprocess.run(argv, input=data, stdout=subprocess.PIPE, check=True)
    return res.stdout


def decompress(data):
    """Decompresses the payload by its magic; the kernel build appends a 4-byte size to it."""
    if data[:4] == b"\x02\x21\x4c\x18":  # legacy LZ4, the format the kernel uses
        return run_tool(["lz4", "-d", "-c"], data[:-4])
    if data[:4] == b"\x04\x22\x4d\x18":  # LZ4 frame
        return run_tool(["lz4", "-d", "-c"], data)
    if data[:2] == b"\x1f\x8b":
        return zlib.decompressobj(31).decompress(data)  # stops at the end of the gzip member
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return run_tool(["zstd", "-d", "-c"], data[:-4])
    if data[:3] == b"\x5d\x00\x00":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
    raise ValueError("unknown payload compression, magic %s" % data[:6].hex())


def pvh_entry(elf):
    """Returns the PVH 32-bit entry address from the ELF's PT_NOTE segments, or None."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("decompressed payload is not a little-endian ELF64")
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            desc_at = pos + 12 + ((namesz + 3) & ~3)
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                size = 8 if descsz >= 8 else 4
                return int.from_bytes(elf[desc_at:desc_at + size], "little")
            pos = desc_at + ((descsz + 3) & ~3)
    return None


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: extract-vmlinux.py BZIMAGE OUT-VMLINUX")
    with open(sys.argv[1], "rb") as f:
        bz = f.read()
    elf = decompress(payload(bz))
    entry = pvh_entry(elf)
    if entry is None:
        sys.exit("extract-vmlinux: %s has no PVH (Xen PHYS32_ENTRY) note" % sys.argv[1])
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(elf)
    os.replace(tmp, sys.argv[2])
    print("extract-vmlinux: %s (%d bytes), PVH entry %#x" % (sys.argv[2], len(elf), entry))


if __name__ == "__main__":
    main()
