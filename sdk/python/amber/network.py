"""Sandbox networking for the SDK: checks network=, allow_out= and deny_out=, and drives
`amberctl net` (ctl/netns.c), the one implementation of the namespace, TAP and nftables set-up
that amberctl create uses too. See docs/network.md.
"""
import json
import os
import re
import subprocess

from . import runtime
from .errors import CommandExitError, SandboxClientError, SandboxError, SandboxUnavailableError

MAX_RULES = 64  # per list, as NET_MAX_RULES
RULE_MAX_LEN = 40
GUEST_SETUP_TIMEOUT_S = 30.0
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_ADDR = re.compile(r"^%s(?:\.%s){3}$" % (_OCTET, _OCTET))
_DIGITS = re.compile(r"^[0-9]+$")
GRAMMAR = "A.B.C.D[/N][:PORT[-PORT]]"


def _bad(what, rule, why):
    return SandboxClientError("%s rule %r: %s (want %s)" % (what, rule, why, GRAMMAR), status=400)


def parse_rule(rule, what="allow_out"):
    """rule ("10.0.0.0/8", "1.2.3.4:443", "1.2.3.4/32:1000-2000") normalised as ctl/netns_rules.c
    formats it; SandboxClientError (status 400) naming the fault if it is malformed. The
    grammar and messages follow net_parse_rule, which amberctl applies again."""
    if not isinstance(rule, str):
        raise _bad(what, rule, "not a string")
    if not rule:
        raise _bad(what, rule, "empty rule")
    if len(rule) > RULE_MAX_LEN:
        raise _bad(what, rule, "too long")
    if rule.count(":") > 1:
        raise _bad(what, rule, "IPv4 only")
    addr_pfx, _, port = rule.partition(":")
    if "/" in port:
        raise _bad(what, rule, "the /prefix goes before the :port")
    addr, slash, pfx = addr_pfx.partition("/")
    if not _ADDR.match(addr):
        raise _bad(what, rule, "bad IPv4 address %r" % addr)
    prefix = 32
    if slash:
        if not _DIGITS.match(pfx) or len(pfx) > 2 or int(pfx) > 32:
            raise _bad(what, rule, "the prefix must be 0..32")
        prefix = int(pfx)
    lo = hi = 0
    if ":" in rule:
        a, dash, b = port.partition("-")
        nums = [a, b] if dash else [a]
        if any(not _DIGITS.match(n) or len(n) > 5 or not 1 <= int(n) <= 65535 for n in nums):
            raise _bad(what, rule, "ports are 1..65535 (PORT or LO-HI)")
        lo, hi = int(a), int(b) if dash else int(a)
        if hi < lo:
            raise _bad(what, rule, "the port range runs backwards")
    value = 0
    for part in addr.split("."):
        value = value << 8 | int(part)
    mask = 0 if prefix == 0 else (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    if value & ~mask & 0xFFFFFFFF:
        raise _bad(what, rule, "host bits are set below /%d" % prefix)
    out = addr + ("" if prefix == 32 else "/%d" % prefix)
    if lo:
        out += ":%d" % lo if lo == hi else ":%d-%d" % (lo, hi)
    return out


def check(network, allow_out, deny_out):
    """create()'s network arguments checked before anything is made: None for no network, else
    {"allow_out": [...], "deny_out": [...]} (normalised). Raises SandboxClientError (400)."""
    if not isinstance(network, bool):
        raise SandboxClientError("network must be True or False, not %r" % (network,), status=400)
    lists = {}
    for what, rules in (("allow_out", allow_out), ("deny_out", deny_out)):
        if rules is None:
            rules = []
        if isinstance(rules, (str, bytes)) or not isinstance(rules, (list, tuple)):
            raise SandboxClientError("%s must be a list of %s strings, not %r" % (what, GRAMMAR, rules),
                                     status=400)
        if len(rules) > MAX_RULES:
            raise SandboxClientError("%s has %d rules; at most %d" % (what, len(rules), MAX_RULES), status=400)
        lists[what] = [parse_rule(r, what) for r in rules]
    if not network:
        if lists["allow_out"] or lists["deny_out"]:
            raise SandboxClientError("allow_out and deny_out need network=True", status=400)
        return None
    return lists


def amberctl():
    """The amberctl that does the work: $AMBERCTL_BIN, else build/amberctl."""
    return os.environ.get("AMBERCTL_BIN") or os.path.join(runtime.repo_root(), "build", "amberctl")


def _run(args, timeout=120):
    try:
        return subprocess.run([amberctl(), "net"] + args, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxUnavailableError("cannot run %s net %s: %s" % (amberctl(), args[0], e)) from None


def up(sandbox_id, sandbox_dir, rules):
    """Makes sandbox_id's namespace, TAP and nft tables; returns `amberctl net up`'s record
    (netns, tap, guest_ip, gateway, dns, amber_net_arg, guest_script, ...). On failure nothing
    is left and SandboxUnavailableError says why (e.g. not root, nft missing)."""
    args = ["up", "--id", sandbox_id, "--dir", sandbox_dir]
    for r in rules["allow_out"]:
        args += ["--allow-out", r]
    for r in rules["deny_out"]:
        args += ["--deny-out", r]
    res = _run(args)
    if res.returncode != 0:
        raise SandboxUnavailableError(res.stderr.decode(errors="replace").strip()
                                      or "amberctl net up exited %d" % res.returncode, sandbox_id)
    try:
        return json.loads(res.stdout)
    except ValueError:
        down(sandbox_id)
        raise SandboxUnavailableError("amberctl net up printed no record", sandbox_id) from None


def state_dir():
    return os.environ.get("AMBER_NET_STATE_DIR") or "/run/amber-net"


def _has_network(sandbox_id):
    return (os.path.exists(os.path.join(state_dir(), sandbox_id))
            or os.path.exists("/run/netns/amber-" + sandbox_id))


def down(sandbox_id):
    """Removes sandbox_id's network if it has one (cheap when not). Raises
    SandboxUnavailableError if something could not be removed."""
    if not runtime.valid_id(sandbox_id) or not _has_network(sandbox_id):
        return
    res = _run(["down", "--id", sandbox_id])
    if res.returncode != 0:
        raise SandboxUnavailableError("sandbox %s: removing its network failed: %s"
                                      % (sandbox_id, res.stderr.decode(errors="replace").strip()), sandbox_id)


def gc():
    """Removes the networks of sandboxes whose amber is gone (a killed SDK leaves them);
    nothing to do, and no process started, when no sandbox has a network."""
    try:
        if not [n for n in os.listdir(state_dir()) if not n.startswith(".")]:
            return
    except OSError:
        return
    _run(["gc"])


def exec_prefix(sandbox_id):
    """The argv prefix that starts a program inside sandbox_id's namespace (same pid)."""
    return [amberctl(), "net", "exec", "--id", sandbox_id, "--"]


def guest_failed(sbx, err):
    """The exception for a guest whose network set-up failed."""
    if isinstance(err, CommandExitError):
        detail = "exited %s: %s" % (err.exit_code, (err.stderr or "").strip()[-300:])
    else:
        detail = str(err)
    return SandboxUnavailableError("sandbox %s: the guest's network set-up failed: %s" % (sbx.id, detail), sbx.id)


def configure_guest(sbx, info):
    """Runs the set-up script (address, route, resolv.conf) in the guest through its agent."""
    try:
        sbx.commands.run(info["guest_script"], timeout=GUEST_SETUP_TIMEOUT_S * runtime.timeout_scale())
    except SandboxError as e:
        raise guest_failed(sbx, e) from None


def refuse(sbx, what):
    """SandboxClientError (409) for an operation a networked sandbox does not support."""
    if sbx.config.get("network"):
        raise SandboxClientError("sandbox %s: %s is not supported for a sandbox with network=True "
                                 "(docs/network.md)" % (sbx.id, what), status=409, sandbox_id=sbx.id)
