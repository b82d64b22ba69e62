"""Shared set-up of the SDK's fake-amber tests: paths, the environment that points the SDK at
tests/fake_amber.py (a real amber-agent on a Unix socket), and the skip without the agent."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
sys.path.insert(0, SDK)
REPO = os.path.dirname(os.path.dirname(SDK))
AGENT = os.path.join(REPO, "build", "amber-agent")
FAKE = os.path.join(HERE, "fake_amber.py")

ENV = {"AMBER_BIN": FAKE, "AMBER_KVM_DEVICE": "/dev/null", "AMBER_TIMEOUT_SCALE": "1"}
_saved = {}


def set_env():
    """setUpModule: point the SDK at the fake amber, remembering what was there."""
    for k, v in ENV.items():
        _saved[k] = os.environ.get(k)
        os.environ[k] = v


def restore_env():
    """tearDownModule: put the environment back as set_env found it."""
    for k, v in _saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


needs_agent = unittest.skipUnless(os.access(AGENT, os.X_OK),
                                  "build/amber-agent is missing (make build/amber-agent)")


def kill_leftovers(*dirs):
    """Cleanup: SIGKILL every process whose command line names one of dirs (the fake amber
    stops its agent to 'pause' it, and a hibernate kills the fake amber, so a stopped agent of
    a hibernated sandbox would otherwise outlive the test)."""
    import signal  # noqa: PLC0415

    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(d and d in cmd for d in dirs):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@needs_agent
class SharedSandboxCase(unittest.TestCase):
    """A test class whose tests share one fake sandbox, self.sbx, created in a temporary runtime
    directory (self.root, removed afterwards; the sandbox's runtime directory is RUNTIME_SUB
    below it, or root itself)."""
    RUNTIME_SUB = None

    @classmethod
    def setUpClass(cls):
        import tempfile  # noqa: PLC0415

        from amber import Sandbox  # noqa: PLC0415

        cls.root = tempfile.mkdtemp(prefix="amber-%s-" % cls.__name__.lower())
        rt = os.path.join(cls.root, cls.RUNTIME_SUB) if cls.RUNTIME_SUB else cls.root
        cls.sbx = Sandbox.create(runtime_dir=rt)

    @classmethod
    def tearDownClass(cls):
        import shutil  # noqa: PLC0415

        try:
            cls.sbx.delete()
        finally:
            shutil.rmtree(cls.root, ignore_errors=True)


@needs_agent
class StoreCase(unittest.TestCase):
    """A test of hibernate, templates and fork against the fake amber: its own runtime root
    (self.root), state directory (self.state, set as AMBER_STATE_DIR), a directory for the fake
    guest's files (self.work), and the guest identity step replaced by a recorder
    (self.identities). ENV_EXTRA adds environment for the fake amber while each test runs.
    Cleanup deletes every sandbox left, kills leftover processes and removes the directories."""
    PREFIX = "amber-hib"
    ENV_EXTRA = {}

    def setUp(self):
        import tempfile  # noqa: PLC0415

        from amber import flow, template  # noqa: PLC0415

        self.root = tempfile.mkdtemp(prefix=self.PREFIX + "-run-")
        self.state = tempfile.mkdtemp(prefix=self.PREFIX + "-state-")
        self.work = tempfile.mkdtemp(prefix=self.PREFIX + "-files-")
        os.environ["AMBER_STATE_DIR"] = self.state
        os.environ.update(self.ENV_EXTRA)
        self.identities = []
        template.set_identity = lambda sbx, host, mid: flow.Io(self.identities.append, (sbx.id, host, mid))
        self.addCleanup(self.cleanup)

    def cleanup(self):
        import shutil  # noqa: PLC0415

        from amber import Sandbox  # noqa: PLC0415

        os.environ.pop("FAKE_AMBER_SNAP_ENOSPC", None)
        for k in self.ENV_EXTRA:
            os.environ.pop(k, None)
        for sbx in Sandbox.list(runtime_dir=self.root):
            try:
                sbx.delete()
            except Exception:  # noqa: BLE001
                pass
        os.environ.pop("AMBER_STATE_DIR", None)
        kill_leftovers(self.root, self.state)
        for d in (self.root, self.state, self.work):
            shutil.rmtree(d, ignore_errors=True)

    def pd(self, sid):
        """The persistent directory of sandbox sid."""
        return os.path.join(self.state, sid)
