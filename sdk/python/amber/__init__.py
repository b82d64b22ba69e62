"""amber Python SDK: local microVM sandboxes (create, execute, pause, resume, delete).

    from amber import Sandbox
    with Sandbox.create() as sbx:
        sbx.execute("echo 42 > /tmp/value.txt")
        sbx.pause()
        sbx.resume()
        print(sbx.execute("cat /tmp/value.txt").stdout)

Standard library only (Python 3.11).
"""
from .errors import (SandboxClientError, SandboxError, SandboxNotFoundError, SandboxTimeoutError,
                     SandboxUnavailableError)
from .errors import CommandExitError, CommandNotFoundError, StdinClosedError
from .commands import CommandHandle, CommandResult, ProcessInfo
from .errors import SandboxFileNotFoundError, SandboxFileTypeError
from .files import EntryInfo, WriteInfo
from .aio import AsyncCommandHandle, AsyncSandbox
from .pty import PtyHandle
from .watch import FilesystemEvent, WatchHandle
from .proto import ExecResult
from .sandbox import Sandbox
from .runtime import runtime_root, timeout_scale

__all__ = [
    "Sandbox", "ExecResult", "SandboxError", "SandboxClientError", "SandboxNotFoundError",
    "SandboxUnavailableError", "SandboxTimeoutError", "runtime_root", "timeout_scale",
    "CommandExitError", "CommandNotFoundError", "StdinClosedError", "CommandHandle", "CommandResult",
    "ProcessInfo", "SandboxFileNotFoundError", "SandboxFileTypeError", "EntryInfo", "WriteInfo",
    "AsyncSandbox", "AsyncCommandHandle", "PtyHandle", "FilesystemEvent", "WatchHandle",
]
