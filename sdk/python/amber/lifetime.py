"""Checks for a sandbox's lifetime and identity options: timeout, on_timeout, metadata, envs,
and Sandbox.list()'s filters. Every bad value raises SandboxClientError (400) naming it."""
import math
import re

from .errors import SandboxClientError, SandboxError

TIMEOUT_MAX_S = 366 * 86400  # amber's bound on PUT /timeout
ON_TIMEOUT = ("kill", "pause")
STATES = {"running": "Running", "paused": "Paused", "hibernated": "Hibernated"}
MAP_MAX_KEYS = 64
MAP_MAX_KEY = 128
MAP_MAX_VALUE = 4096
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _bad(msg, sandbox_id=None):
    return SandboxClientError(msg, status=400, sandbox_id=sandbox_id)


def check_timeout(timeout, sandbox_id=None):
    """Seconds (int or float > 0, at most a year) as whole seconds, rounded up."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
            or timeout > TIMEOUT_MAX_S or math.isnan(timeout):
        raise _bad("timeout must be a number of seconds > 0 and <= %d, not %r" % (TIMEOUT_MAX_S, timeout),
                   sandbox_id)
    return int(math.ceil(timeout))


def check_on_timeout(action, sandbox_id=None):
    if action not in ON_TIMEOUT:
        raise _bad("on_timeout must be 'kill' or 'pause', not %r" % (action,), sandbox_id)
    return action


def check_str_map(what, m, env_names=False):
    """A copy of m ({str: str}, bounded); None gives {}."""
    if m is None:
        return {}
    if not isinstance(m, dict):
        raise _bad("%s must be a dict of str to str, not %s" % (what, type(m).__name__))
    if len(m) > MAP_MAX_KEYS:
        raise _bad("%s has %d keys: at most %d" % (what, len(m), MAP_MAX_KEYS))
    out = {}
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _bad("%s: keys and values must be str, not %r: %r" % (what, k, v))
        if not k or len(k) > MAP_MAX_KEY or len(v) > MAP_MAX_VALUE or "\0" in k + v:
            raise _bad("%s: key %r or its value is empty, too long (%d/%d) or has a NUL"
                       % (what, k[:40], MAP_MAX_KEY, MAP_MAX_VALUE))
        if env_names and not ENV_NAME_RE.fullmatch(k):
            raise _bad("%s: %r is not a variable name" % (what, k))
        out[k] = v
    return out


def check_list_filters(state, metadata):
    """(set of amber state names or None, metadata dict or None) for matches()."""
    states = None
    if state is not None:
        names = [state] if isinstance(state, str) else list(state) if isinstance(state, (list, tuple, set)) else None
        if not names or any(n not in STATES for n in names):
            raise _bad("state must be 'running', 'paused', 'hibernated' or a list of them, not %r" % (state,))
        states = {STATES[n] for n in names}
    if metadata is not None:
        metadata = check_str_map("metadata", metadata)
    return states, metadata


def matches(sbx, states, metadata):
    """True if sbx passes the filters (its state is asked only when states is set)."""
    if metadata:
        have = sbx.config.get("metadata") or {}
        if not isinstance(have, dict) or any(have.get(k) != v for k, v in metadata.items()):
            return False
    if states is not None:
        try:
            return sbx.state() in states
        except SandboxError:
            return False  # it ended meanwhile
    return True
