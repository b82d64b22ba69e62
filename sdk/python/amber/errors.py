"""Exceptions raised by the amber SDK; they mirror the seed SDK's names."""


class SandboxError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message, sandbox_id=None):
        super().__init__(message)
        self.message = message
        self.sandbox_id = sandbox_id


class SandboxClientError(SandboxError):
    """The request conflicts with the sandbox's state or is invalid (.status: HTTP-like code).

    409 is a state conflict, e.g. "already paused", or execute() on a paused sandbox.
    """

    def __init__(self, message, status=400, sandbox_id=None):
        super().__init__(message, sandbox_id)
        self.status = status


class SandboxNotFoundError(SandboxError):
    """The sandbox does not exist: never created, deleted, or its amber process has ended."""


class SandboxUnavailableError(SandboxError):
    """amber or KVM cannot do it (no /dev/kvm, amber failed to start, the VMM failed)."""


class SandboxTimeoutError(SandboxError):
    """A call did not finish in time. For execute(), .result holds the output seen so far."""

    def __init__(self, message, sandbox_id=None, result=None):
        super().__init__(message, sandbox_id)
        self.result = result


class CommandNotFoundError(SandboxClientError):
    """No background command with that pid in the sandbox (never started, or ended and
    collected). status 404."""

    def __init__(self, message, sandbox_id=None, pid=None):
        super().__init__(message, status=404, sandbox_id=sandbox_id)
        self.pid = pid


class StdinClosedError(SandboxClientError):
    """send_stdin() after close_stdin(), or after the command ended. status 409."""

    def __init__(self, message, sandbox_id=None):
        super().__init__(message, status=409, sandbox_id=sandbox_id)


class CommandExitError(SandboxError):
    """commands.run() or a handle's wait(): the command exited non-zero (or was killed).
    .result is the CommandResult; .exit_code, .stdout and .stderr are its fields."""

    def __init__(self, message, sandbox_id=None, result=None):
        super().__init__(message, sandbox_id)
        self.result = result
        self.exit_code = result.exit_code if result is not None else None
        self.stdout = result.stdout if result is not None else ""
        self.stderr = result.stderr if result is not None else ""


class SandboxFileNotFoundError(SandboxClientError):
    """files.*: the guest path does not exist. status 404."""

    def __init__(self, message, sandbox_id=None, path=None):
        super().__init__(message, status=404, sandbox_id=sandbox_id)
        self.path = path


class SandboxFileTypeError(SandboxClientError):
    """files.*: the guest path is a directory where a file is needed, or not a directory where
    one is needed (or exists as a file where make_dir wants a directory). status 400."""

    def __init__(self, message, sandbox_id=None, path=None):
        super().__init__(message, status=400, sandbox_id=sandbox_id)
        self.path = path
