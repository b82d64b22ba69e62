#!/usr/bin/env python3
"""Copies kernel modules and their dependencies, in load order, from an unpacked kernel package.

usage: modules.py KERNEL-TREE OUT-DIR MODULE...
KERNEL-TREE is a dpkg -x tree (holding lib/modules/VERSION). Modules land decompressed and flat in
OUT-DIR/lib/modules/, and OUT-DIR/etc/amber-modules lists their file names in insmod order
(dependencies first). Built-in or missing modules are skipped with a note on stderr.
"""
import gzip
import lzma
import os
import shutil
import subprocess
import sys


def norm(name):
    base = os.path.basename(name)
    for suffix in (".xz", ".zst", ".gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if base.endswith(".ko"):
        base = base[:-3]
    return base.replace("-", "_")


def load_dep(moddir, version, tree):
    dep_file = os.path.join(moddir, "modules.dep")
    if not os.path.exists(dep_file):
        # Packages ship no modules.dep (depmod makes it at install time); build it in the tree.
        subprocess.run(["depmod", "-b", tree, version], check=True)
    deps = {}
    with open(dep_file) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[norm(path)] = (path, rest.split())
    builtin = set()
    builtin_file = os.path.join(moddir, "modules.builtin")
    if os.path.exists(builtin_file):
        with open(builtin_file) as f:
            builtin = {norm(line.strip()) for line in f if line.strip()}
    return deps, builtin


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-d", "-c", path], stdout=subprocess.PIPE, check=True).stdout
    return data


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    tree, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
    versions = sorted(os.listdir(os.path.join(tree, "lib", "modules")))
    if len(versions) != 1:
        sys.exit("modules.py: expected one kernel version in %s, found %s" % (tree, versions))
    version = versions[0]
    moddir = os.path.join(tree, "lib", "modules", version)
    deps, builtin = load_dep(moddir, version, tree)

    order = []
    seen = set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        if name in builtin:
            print("modules.py: %s is built in" % name, file=sys.stderr)
            return
        if name not in deps:
            print("modules.py: %s not found, skipped" % name, file=sys.stderr)
            return
        path, needs = deps[name]
        for dep in needs:
            visit(norm(dep))
        order.append(path)

    for name in wanted:
        visit(norm(name))

    libdir = os.path.join(out, "lib", "modules")
    os.makedirs(libdir, exist_ok=True)
    os.makedirs(os.path.join(out, "etc"), exist_ok=True)
    names = []
    for path in order:
        name = os.path.basename(path).split(".ko")[0] + ".ko"
        with open(os.path.join(libdir, name), "wb") as f:
            f.write(read_module(os.path.join(moddir, path)))
        names.append(name)
    with open(os.path.join(out, "etc", "amber-modules"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    shutil.copy(os.path.join(moddir, "modules.builtin"), os.path.join(libdir, "modules.builtin"))


if __name__ == "__main__":
    main()
