#!/usr/bin/env python3
"""Lists circles between amber's C files (make check-layers runs it): one-way stairs inside a folder.

A module is a .c file with its .h of the same name (vmm/vm.c + vmm/vm.h). Module A depends on
module B when A's .c or .h #includes B's header, or A's .c calls a function B's .c defines
(a call through a function pointer, such as a hooks table, is no dependency: that is how a lower
file reaches a higher one). A circle is a set of modules that depend on each other both ways.
Headers shared by several files without a .c of their own (vsock_priv.h) add no edge.
tests/ is left out. Reads the sources as text: the project's clang-format style puts a function
definition's name on a line that starts at column 0.

Circles that were here before this check are listed in KNOWN: each is a large file split into
parts that share private state. They are printed as known; a circle that is not one of them (or
part of one) fails. Break one, and take it off the list.

usage: scripts/check-cycles.py   (prints one line a circle; exit status 1 when there is a new one)
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEF = re.compile(r"^(?!static\b)(?:[A-Za-z_][\w ]*[\s*]+)(\w+)\([^;]*$")
CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
KNOWN = [
    {"api/listen", "api/server"},
    {"board/snapshot", "board/snapshot_mem"},
    {"config/json", "config/sections"},
    {"devices/virtio/blk", "devices/virtio/blk_io", "devices/virtio/blk_req"},
    {"guest/agent/bg", "guest/agent/exec"},
]
NOISE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', re.S)


def sources():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.c", "*.h"],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True).stdout.split()
    return [f for f in out if not f.startswith(("tests/", "build/")) and os.path.exists(os.path.join(ROOT, f))]


def graph(files):
    """{module: set of modules it depends on}."""
    modules = {os.path.splitext(f)[0] for f in files if f.endswith(".c")}
    text = {}
    for f in files:
        with open(os.path.join(ROOT, f), errors="replace") as fh:
            text[f] = fh.read()
    defined = {}  # function name -> module
    for f in files:
        if f.endswith(".c"):
            for line in text[f].splitlines():
                m = DEF.match(line)
                if m:
                    defined.setdefault(m.group(1), os.path.splitext(f)[0])
    deps = {m: set() for m in modules}
    for f in files:
        me = os.path.splitext(f)[0]
        if me not in deps:
            continue
        for inc in INCLUDE.findall(text[f]):
            target = os.path.splitext(inc)[0]
            if target in modules and target != me:
                deps[me].add(target)
        if f.endswith(".c"):
            for name in set(CALL.findall(NOISE.sub(" ", text[f]))):
                target = defined.get(name)
                if target and target != me:
                    deps[me].add(target)
    return deps


def circles(deps):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return sorted(out)


def main():
    deps = graph(sources())
    new = 0
    for comp in circles(deps):
        known = any(set(comp) <= k for k in KNOWN)
        new += not known
        ways = ["%s -> %s" % (a, b) for a in comp for b in sorted(deps[a]) if b in comp]
        print("%s: %s (%s)" % ("known circle" if known else "NEW CIRCLE", " <-> ".join(comp), ", ".join(ways)))
    print("check-cycles: %d modules, %d new circle(s)" % (len(deps), new))
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
