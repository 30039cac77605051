"""The project's exceptions: one root, subclasses a user can act on.

Every message is safe to show: no exception built here ever carries a secret value.
"""

from __future__ import annotations


class LunaHAError(Exception):
    """Root of every error this project raises on purpose."""


class SpecError(LunaHAError):
    """A property (resource property or CLI file key) is missing or invalid.

    ``prop`` is the property path as the user wrote it, e.g. ``Appliances[1].Host``.
    """

    def __init__(self, prop: str, problem: str) -> None:
        self.prop = prop
        self.problem = problem
        super().__init__(f"Property {prop}: {problem}")


class CommandBuildError(LunaHAError):
    """A value cannot be placed safely on a lunash command line."""


class SecretError(LunaHAError):
    """A Secrets Manager secret cannot be read or does not have the expected shape."""


class StoreError(LunaHAError):
    """Parameter Store could not be read or written."""


class ClientToolError(LunaHAError):
    """A Luna client tool (vtl, lunacm) failed on an ASG member."""


class PartitionNotReady(ClientToolError):
    """An HA member's partition cannot take its members yet (Luna 7: not initialized, Crypto Officer
    not initialized, or its first password still to be changed). ``host``, ``serial`` and
    ``reason`` (the PKCS#11 result, or ``no label``) say which; the message says what to do."""

    def __init__(self, host: str, serial: str, reason: str, problem: str) -> None:
        self.host = host
        self.serial = serial
        self.reason = reason
        self.problem = problem
        super().__init__(f"Partition {serial} on {host}: {problem}")


class DeadlineExceeded(LunaHAError):
    """The run's deadline arrived before all steps were done; a re-run converges the rest."""


class ApplianceError(LunaHAError):
    """Something went wrong on one appliance; names the appliance and the step."""

    def __init__(self, host: str, step: str, problem: str) -> None:
        self.host = host
        self.step = step
        self.problem = problem
        super().__init__(f"Appliance {host}, step '{step}': {problem}")


class ConnectFailed(ApplianceError):
    """TCP connection refused, unreachable, or the SSH handshake failed."""


class HostKeyMismatch(ApplianceError):
    """The appliance presented a host key other than the pinned one."""


class AuthenticationFailed(ApplianceError):
    """The manager credentials were rejected."""


class CommandFailed(ApplianceError):
    """A lunash command ended with a non-zero Command Result or Error: lines."""


class CommandTimeout(ApplianceError):
    """No prompt (or no expected text) arrived in time."""


class ConnectionLost(ApplianceError):
    """The SSH session closed in the middle of a step."""


class UnexpectedPrompt(ApplianceError):
    """lunash asked a question that automation never answers blindly."""


class OutputTooLarge(ApplianceError):
    """The appliance sent more than a step (or a session) may read: a flooding or broken peer."""


class PasswordChangeRequired(ApplianceError):
    """The appliance wants the manager's password changed before it opens lunash (a first login)."""


class ZeroizationGuard(ApplianceError):
    """Logging in as HSM Admin is refused because a failure could zeroize the HSM."""


class SetupError(LunaHAError):
    """This machine is not set up for the command: no AWS region or credentials, a missing extra."""


class RestRequestFailed(ApplianceError):
    """The appliance's REST API answered a request with an error status (``status``, and the
    appliance's own ``error`` text, which never holds a password the request carried)."""

    def __init__(self, host: str, step: str, problem: str, *, status: int, error: str) -> None:
        super().__init__(host, step, problem)
        self.status = status
        self.error = error
