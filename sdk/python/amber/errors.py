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
