"""Evidence that a nested guest's vCPU ran on the test host's own state: a guest RIP inside the
test host's VMRUN function (__svm_vcpu_run), seen in amber's stall report or in the test host's
KVM trace of a shutdown exit (a triple fault, whose registers amber never sees on AMD).

amber's guests carry no kvm-amd module, and amber never writes an application processor's
registers outside a restore, so such a RIP can only have been put there by the layer below the
test host: QEMU's TCG emulation of SVM, which swaps both sides' state on VMRUN and #VMEXIT
(docs/pause.md, "The livelock placed"). tests/testhost/e2e.py lets a failure with this evidence
run again; tests/testhost/init.sh records the shutdown exits.
"""
import os
import re

KALLSYMS = "/proc/kallsyms"
# init.sh links it to the job folder, where the trace of KVM's shutdown exits outlives the test host.
SHUTDOWN_LOG = "/run/amber-kvm-shutdowns.log"
VMRUN_FUNC = "__svm_vcpu_run"
STALL_RIP = re.compile(r"vcpu(\d+) regs: rip (0x[0-9a-f]+)")
TRACE_RIP = re.compile(r"kvm_exit: vcpu (\d+) reason (\S+) rip (0x[0-9a-f]+)")
_range = {}


def vmrun_range(path=None):
    """(start, end) of the test host's __svm_vcpu_run from kallsyms (path, or KALLSYMS), end
    being the next symbol's address; None when kvm-amd is not loaded or the addresses are hidden."""
    path = path or KALLSYMS
    if path in _range:
        return _range[path]
    start, addrs = None, []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                addr = int(parts[0], 16)
                addrs.append(addr)
                if parts[2] == VMRUN_FUNC:
                    start = addr
    except (OSError, ValueError):
        return None
    later = [a for a in addrs if start is not None and a > start]
    _range[path] = (start, min(later)) if start and later else None
    return _range[path]


def mark():
    """Where the shutdown trace ends now: shutdown_lines() reads only what comes after it."""
    try:
        return os.path.getsize(SHUTDOWN_LOG)
    except OSError:
        return 0


def shutdown_lines(since):
    """The shutdown trace's lines written after offset since ([] without a trace)."""
    try:
        with open(SHUTDOWN_LOG, errors="replace") as f:
            f.seek(since)
            return f.read(1 << 20).splitlines()
    except OSError:
        return []


def evidence(texts, trace, rng):
    """The evidence line when a stall report in texts (amber's logs) or a shutdown exit in trace
    (lines of the KVM trace) shows a guest RIP inside rng, the test host's VMRUN function;
    None otherwise, or when rng is None."""
    if not rng:
        return None
    start, end = rng
    seen = [("amber's stall report", int(m.group(2), 16), m.group(1)) for t in texts for m in STALL_RIP.finditer(t)]
    seen += [("the test host's KVM trace of a %s exit" % m.group(2), int(m.group(3), 16), m.group(1))
             for line in trace for m in [TRACE_RIP.search(line)] if m]
    for source, rip, vcpu in seen:
        if start <= rip < end:
            return ("%s shows vcpu%s at rip %#x, inside the test host's own %s (%#x-%#x): the guest ran on "
                    "the test host's state, which only the TCG emulation of SVM below it can put there"
                    % (source, vcpu, rip, VMRUN_FUNC, start, end))
    return None
