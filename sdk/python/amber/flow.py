"""Steps that the blocking Sandbox and the asyncio AsyncSandbox share. Hibernate, resume,
templates and fork are written once (hibernate.py, template.py) as generators that yield the
waits they need; run_sync() performs each one blocking, run_async() awaits it on the caller's
loop. Everything between two yields is short local bookkeeping and runs where the flow runs.

Under asyncio, only Io (file copies and fsynced writes) leaves the loop, to its default
executor; API calls, agent calls, sleeps, process exits and locks are awaited on the loop.
"""
import asyncio
import concurrent.futures
import time

from .errors import CommandExitError, SandboxUnavailableError

LOCK_POLL_S = 0.05
PARALLEL_MAX = 8


def _aio():
    from . import aio  # late: aio.py imports sandbox.py, which imports the flows
    return aio


class Api:
    """A call on sbx's API with the SDK's error mapping; its value is the JSON body."""

    def __init__(self, sbx, method, path, body=None, timeout=None):
        self.sbx, self.method, self.path, self.body, self.timeout = sbx, method, path, body, timeout

    def sync(self):
        return self.sbx._api(self.method, self.path, timeout=self.timeout, body=self.body)

    async def aio(self):
        return await _aio().api_call(self.sbx, self.method, self.path, self.body, self.timeout)


class Request:
    """One raw request on an API socket that may not be listening yet: its value is
    api.ApiResponse; OSError (ConnectionRefusedError...) is raised as it comes."""

    def __init__(self, sock, method, path, body, timeout):
        self.sock, self.method, self.path, self.body, self.timeout = sock, method, path, body, timeout

    def sync(self):
        from . import api
        return api.request(self.sock, self.method, self.path, body=self.body, timeout=self.timeout)

    async def aio(self):
        return await _aio().http_request(self.sock, self.method, self.path, self.body, self.timeout)


class Io:
    """fn(*args): file work that may take long (a drive copy, an fsynced write)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def sync(self):
        return self.fn(*self.args)

    async def aio(self):
        return await asyncio.get_running_loop().run_in_executor(None, self.fn, *self.args)


class Sleep:
    def __init__(self, seconds):
        self.seconds = seconds

    def sync(self):
        time.sleep(self.seconds)

    async def aio(self):
        await asyncio.sleep(self.seconds)


class WaitExit:
    """True once the process behind pidfd has exited, False after timeout seconds."""

    def __init__(self, pidfd, timeout):
        self.pidfd, self.timeout = pidfd, timeout

    def sync(self):
        from .sandbox import _wait_pidfd
        return _wait_pidfd(self.pidfd, self.timeout)

    async def aio(self):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(self.pidfd, lambda: done.done() or done.set_result(True))
        try:
            return await asyncio.wait_for(done, self.timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(self.pidfd)


class Ready:
    """Returns once sbx's agent answers (sbx was just started); raises as create() does."""

    def __init__(self, sbx, deadline, timeout):
        self.sbx, self.deadline, self.timeout = sbx, deadline, timeout

    def sync(self):
        self.sbx._wait_ready(self.deadline, self.timeout)

    async def aio(self):
        await _aio().AsyncSandbox(self.sbx)._wait_ready(self.deadline, self.timeout)


class Exec:
    """argv run as root in the guest with stdin (bytes); a non-zero exit raises
    SandboxUnavailableError naming what it was for."""

    def __init__(self, sbx, argv, stdin, timeout, what):
        self.sbx, self.argv, self.stdin, self.timeout, self.what = sbx, argv, stdin, timeout, what

    def _failed(self, code, stderr):
        return SandboxUnavailableError("sandbox %s: %s failed (status %s): %s"
                                       % (self.sbx.id, self.what, code, stderr.strip()), self.sbx.id)

    def sync(self):
        r = self.sbx.execute(self.argv, stdin=self.stdin, timeout=self.timeout)
        if r.exit_code != 0:
            raise self._failed(r.exit_code, r.stderr)

    async def aio(self):
        cmds = _aio().AsyncSandbox(self.sbx).commands
        h = await cmds.run(self.argv, background=True)
        await h.send_stdin(self.stdin)
        await h.close_stdin()
        try:
            await h.wait(self.timeout)
        except CommandExitError as e:
            raise self._failed(e.exit_code, e.stderr) from None


class Delete:
    """sbx.delete() (an AsyncSandbox's under asyncio)."""

    def __init__(self, sbx):
        self.sbx = sbx

    def sync(self):
        self.sbx.delete()

    async def aio(self):
        await _aio().AsyncSandbox(self.sbx).delete()


class Lock:
    """An exclusive flock on path held across later steps; its value is the held
    runtime.FileLock (release() it). Under asyncio it is polled, so that two flows on one loop
    that want it do not block the loop."""

    def __init__(self, path):
        self.path = path

    def sync(self):
        from . import runtime
        return runtime.FileLock(self.path).__enter__()

    async def aio(self):
        from . import runtime
        while True:
            try:
                return runtime.FileLock(self.path, blocking=False).__enter__()
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL_S)


class Parallel:
    """Runs flows at once (threads, or tasks on the loop); its value is the list of their
    results, each a value or the exception it raised."""

    def __init__(self, flows):
        self.flows = list(flows)

    def sync(self):
        if not self.flows:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(PARALLEL_MAX, len(self.flows))) as pool:
            futs = [pool.submit(run_sync, f) for f in self.flows]
            out = []
            for f in futs:
                try:
                    out.append(f.result())
                except BaseException as e:  # noqa: BLE001 (the flow's caller decides)
                    out.append(e)
            return out

    async def aio(self):
        return list(await asyncio.gather(*(run_async(f) for f in self.flows), return_exceptions=True))


def run_sync(flow):
    """Runs a flow (generator of steps) to its end, blocking; returns its return value."""
    value, exc = None, None
    while True:
        try:
            step = flow.throw(exc) if exc is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, exc = None, None
        try:
            value = step.sync()
        except BaseException as e:  # noqa: BLE001 (thrown into the flow, which may handle it)
            exc = e


async def run_async(flow):
    """Runs a flow on the running event loop; returns its return value."""
    value, exc = None, None
    while True:
        try:
            step = flow.throw(exc) if exc is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, exc = None, None
        try:
            value = await step.aio()
        except BaseException as e:  # noqa: BLE001 (thrown into the flow, which may handle it)
            exc = e
