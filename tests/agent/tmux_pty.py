"""`amberctl exec -t` through a real terminal: tmux runs it, types into it, resizes the window,
and checks the terminal comes back as it was (also when amberctl is killed). Shared by
tests/agent/test_agent_host.sh (an agent on a Unix socket) and tests/e2e/test_pty.py (a guest).
Prints "ok - NAME" / "FAIL - NAME: why" lines, then "tmux: P F"; run() returns the failures.
usage: tmux_pty.py AMBERCTL TARGET-OPTION...   (e.g. --agent-sock PATH, or --id ID)"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time


class Tmux:
    def __init__(self, tmp, name):
        self.sock = os.path.join(tmp, name)  # a server of its own: a killed one may linger

    def run(self, *args, check=True):
        return subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args], check=check,
                              capture_output=True, text=True, timeout=20)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "t", check=False).stdout

    def wait_screen(self, needle, limit_s):
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            s = self.screen()
            if needle in s:
                return True, s
            time.sleep(0.1)
        return False, self.screen()

    def wait_screen_re(self, pattern, limit_s):
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            s = self.screen()
            if re.search(pattern, s, re.M):
                return True, s
            time.sleep(0.1)
        return False, self.screen()

    def keys(self, *keys):
        self.run("send-keys", "-t", "t", *keys)

    def kill(self):
        self.run("kill-server", check=False)


def wait_file(path, limit_s):
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            time.sleep(0.1)
            with open(path) as f:
                return f.read().strip()
        time.sleep(0.1)
    return None


def run(ctl, target, scale=1.0):
    """The checks; returns the number of failures."""
    res = {"ok": 0, "fail": 0}

    def check(name, cond, detail=""):
        res["ok" if cond else "fail"] += 1
        print(("ok   - %s" % name) if cond else ("FAIL - %s: %s" % (name, detail)), flush=True)

    tmp = tempfile.mkdtemp(prefix="amber-tmux-")
    tm = Tmux(tmp, "tmux1.sock")
    q = lambda p: shlex.quote(os.path.join(tmp, p))  # noqa: E731
    exec_t = " ".join(shlex.quote(a) for a in [ctl, "exec", "-t", *target])
    try:
        # An interactive shell: type, resize, exit with a status.
        pane = ("stty -g > %s; %s; echo RC=$? > %s; stty -g > %s; sleep 600"
                % (q("before"), exec_t, q("rc"), q("after")))
        tm.run("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", pane)
        ok, s = tm.wait_screen_re(r"[#$] *$", 20 * scale)
        check("tmux: the guest shell prints a prompt", ok, s[-300:])
        tm.keys("echo sum=$((6*7))", "Enter")
        ok, s = tm.wait_screen("sum=42", 20 * scale)
        check("tmux: a command typed into amberctl exec -t runs in the guest shell", ok, s[-300:])
        tm.keys("stty size; readlink /proc/$$/fd/0", "Enter")
        ok, s = tm.wait_screen("30 100", 10 * scale)
        check("tmux: the guest pty starts at the window's size (30 100)", ok, s[-300:])
        ok, s = tm.wait_screen("/dev/pts/", 10 * scale)
        check("tmux: the guest command's stdin is a pty", ok, s[-300:])
        tm.run("resize-window", "-t", "t", "-x", "120", "-y", "40")
        time.sleep(0.5)
        tm.keys("stty size", "Enter")
        ok, s = tm.wait_screen("40 120", 10 * scale)
        check("tmux: resizing the window resizes the guest pty (40 120)", ok, s[-300:])
        tm.keys("exit 7", "Enter")
        rc = wait_file(os.path.join(tmp, "rc"), 10 * scale)
        check("tmux: the guest shell's exit status is amberctl's (7)", rc == "RC=7", rc)
        before, after = wait_file(os.path.join(tmp, "before"), 1), wait_file(os.path.join(tmp, "after"), 5)
        check("tmux: the terminal's mode is restored after exit", before and before == after,
              "%r -> %r" % (before, after))
        tm.kill()

        # amberctl killed by SIGTERM: the terminal is still restored.
        tm = Tmux(tmp, "tmux2.sock")
        inner = "echo $$ > %s; exec %s -- sleep 600" % (q("pid"), exec_t)
        pane = ("stty -g > %s; sh -c %s; echo RC=$? > %s; stty -g > %s; sleep 600"
                % (q("before2"), shlex.quote(inner), q("rc2"), q("after2")))
        tm.run("new-session", "-d", "-s", "t", "-x", "90", "-y", "25", pane)
        pid = wait_file(os.path.join(tmp, "pid"), 10 * scale)
        time.sleep(1.0 * scale)  # amberctl is in raw mode once the guest has started
        raw = subprocess.run(["stty", "-a", "-F", tm.run("display", "-p", "-t", "t", "#{pane_tty}").stdout.strip()],
                             capture_output=True, text=True).stdout
        check("tmux: amberctl exec -t puts the terminal in raw mode (-icanon -echo)",
              "-icanon" in raw and "-echo " in raw, raw[:200])
        if pid:
            os.kill(int(pid), 15)
        rc = wait_file(os.path.join(tmp, "rc2"), 10 * scale)
        check("tmux: amberctl killed by SIGTERM dies of it (143)", rc == "RC=143", rc)
        before, after = wait_file(os.path.join(tmp, "before2"), 1), wait_file(os.path.join(tmp, "after2"), 5)
        check("tmux: the terminal's mode is restored after SIGTERM", before and before == after,
              "%r -> %r" % (before, after))
    except (subprocess.SubprocessError, OSError) as e:  # a tmux step failed: say which
        check("tmux: every tmux step succeeds", False, "%s %s" % (e, getattr(e, "stderr", "")))
    finally:
        tm.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print("tmux: %d %d" % (res["ok"], res["fail"]), flush=True)
    return res["fail"]


if __name__ == "__main__":
    if not shutil.which("tmux"):
        print("tmux: SKIPPED: tmux is not installed (scripts/setup.sh installs it)")
        sys.exit(0)
    sys.exit(1 if run(sys.argv[1], sys.argv[2:]) else 0)
