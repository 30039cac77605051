"""One appliance over one session: observe its state, apply planned steps, fetch its server.pem.

Observation sends read-only commands only. Applying turns each planned ``Step`` into exactly one
lunash command (or one SCP upload); a failed ``hsm login`` is never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from luna_ha.clock import Deadline
from luna_ha.errors import DeadlineExceeded
from luna_ha.lunash import commands as lc
from luna_ha.lunash.dialect import Outcome
from luna_ha.lunash.parsers import (
    HsmInfo,
    parse_client_fingerprint,
    parse_client_list,
    parse_client_show,
    parse_hsm_show,
    parse_partition_list,
)
from luna_ha.ownership import parse_registration
from luna_ha.planner import RECORDS, Action, ApplianceState, Registration, Step, uploaded_file
from luna_ha.ssh import LunaShell

SERVER_CERT_FILE = "server.pem"

# What each step may take at most on a healthy appliance: no step starts without this much time left.
STEP_BUDGET: dict[Action, float] = {
    Action.HSM_INIT: 120.0,
    Action.REGEN_CERT: 60.0,
    Action.NTLS_BIND: 60.0,
    Action.HSM_LOGIN: 20.0,
    Action.PARTITION_CREATE: 60.0,
    Action.UPLOAD_CERT: 10.0,
    Action.CLIENT_REGISTER: 15.0,
    Action.FILE_DELETE: 15.0,
    Action.CLIENT_ASSIGN: 15.0,
    Action.CLIENT_REVOKE: 15.0,
    Action.CLIENT_DELETE: 15.0,
    Action.PARTITION_DELETE: 60.0,
    Action.ADOPT_PARTITION: 5.0,
    Action.RETAIN_PARTITION: 5.0,
    Action.FORGET_PARTITION: 5.0,
}


_GONE = frozenset({Outcome.NO_SUCH_CLIENT})
# Failures that mean the step's effect is already there (another run, or an earlier attempt whose
# answer was lost): the step counts as done.
ALREADY_DONE: dict[Action, frozenset[Outcome]] = {
    Action.CLIENT_ASSIGN: frozenset({Outcome.ALREADY_ASSIGNED}),
    Action.CLIENT_REVOKE: frozenset({Outcome.NOT_ASSIGNED, Outcome.NO_SUCH_CLIENT}),
    Action.CLIENT_DELETE: frozenset({Outcome.NO_SUCH_CLIENT}),
    Action.FILE_DELETE: frozenset({Outcome.NO_SUCH_FILE}),
}


@dataclass(frozen=True)
class GroupSecrets:
    """The secret values one run needs on the appliances; never shown in a repr."""

    admin_password: str = field(repr=False)
    domain: str = field(repr=False)
    partition_password: str = field(repr=False)


def observe(shell: LunaShell, token: str) -> ApplianceState:
    """Read the HSM, its partitions and clients, and the details of the registrations ``token`` owns."""
    hsm = parse_hsm_show(shell.run(lc.build_hsm_show(), step="observe: hsm show").text)
    partitions: dict[str, str] = {}
    clients: tuple[str, ...] = ()
    registrations: dict[str, Registration] = {}
    if not hsm.zeroized:
        for partition in parse_partition_list(
            shell.run(lc.build_partition_list(), step="observe: partition list").text
        ):
            partitions[partition.name] = partition.serial
        clients = parse_client_list(shell.run(lc.build_client_list(), step="observe: client list").text)
        for name in clients:
            if parse_registration(name, token) is None:
                continue
            # A client may vanish between `client list` and here (another run deleting it).
            shown_output = shell.run(lc.build_client_show(name), step="observe: client show", tolerate=_GONE)
            fingerprint_output = shell.run(
                lc.build_client_fingerprint(name), step="observe: client fingerprint", tolerate=_GONE
            )
            if not (shown_output.ok and fingerprint_output.ok):
                continue
            shown = parse_client_show(shown_output.text, name)
            fingerprint = parse_client_fingerprint(fingerprint_output.text)
            registrations[name] = Registration(
                name=name,
                hostname=shown.hostname,
                partitions=tuple(shown.partitions),
                fingerprint=fingerprint,
            )
    return ApplianceState(
        hsm_serial=hsm.serial,
        hsm_label=hsm.label,
        zeroized=hsm.zeroized,
        attempts_left=hsm.attempts_left,
        partitions=partitions,
        clients=tuple(clients),
        registrations=registrations,
    )


def read_hsm(shell: LunaShell, step: str) -> HsmInfo:
    """``hsm show`` again, in this session: what the zeroization guard decides on."""
    return parse_hsm_show(shell.run(lc.build_hsm_show(), step=step).text)


def read_partition_serials(shell: LunaShell) -> dict[str, str]:
    listed = parse_partition_list(shell.run(lc.build_partition_list(), step="read partition serial").text)
    return {p.name: p.serial for p in listed}


def apply_steps(
    shell: LunaShell,
    steps: Iterable[Step],
    *,
    secrets: GroupSecrets,
    certificates: Mapping[str, str],
    deadline: Deadline,
    on_step: Callable[[Step], None] | None = None,
    before_step: Callable[[Step, list[Step]], None] | None = None,
    record: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Run ``steps`` in order; returns the ones done. Stops at the first failure (it raises).

    Steps that are records (``planner.RECORDS``) go to ``record``, not to the appliance."""
    done: list[Step] = []
    pending = list(steps)
    for index, step in enumerate(pending):
        if not deadline.allows(STEP_BUDGET[step.action]):
            left = ", ".join(str(s) for s in pending[index:])
            raise DeadlineExceeded(
                f"not enough time left to start '{step}' ({deadline.remaining():.0f} s left, it may take "
                f"{STEP_BUDGET[step.action]:.0f} s); a re-run will do what remains: {left}"
            )
        if before_step is not None:
            before_step(step, done)
        if step.action in RECORDS:
            if record is None:
                raise ValueError(f"step '{step}' is a record and no recorder was given")
            record(step)
        elif step.action is Action.UPLOAD_CERT:
            shell.put_file(uploaded_file(step.target), certificates[step.target].encode(), step=str(step))
        else:
            shell.run(_command_for(step, secrets), step=str(step), tolerate=ALREADY_DONE.get(step.action, ()))
        done.append(step)
        if on_step is not None:
            on_step(step)
    return done


def _command_for(step: Step, secrets: GroupSecrets) -> lc.Command:
    action, target = step.action, step.target
    if action is Action.HSM_INIT:
        return lc.build_hsm_init(target, secrets.admin_password, secrets.domain)
    if action is Action.REGEN_CERT:
        return lc.build_regen_cert()
    if action is Action.NTLS_BIND:
        return lc.build_ntls_bind()
    if action is Action.HSM_LOGIN:
        return lc.build_hsm_login(secrets.admin_password)
    if action is Action.PARTITION_CREATE:
        return lc.build_partition_create(target, secrets.partition_password, secrets.domain)
    if action is Action.CLIENT_REGISTER:
        return lc.build_client_register(target, target)
    if action is Action.CLIENT_ASSIGN:
        return lc.build_client_assign(target, _partition_of(step))
    if action is Action.CLIENT_REVOKE:
        return lc.build_client_revoke(target, step.partition)
    if action is Action.CLIENT_DELETE:
        return lc.build_client_delete(target)
    if action is Action.FILE_DELETE:
        return lc.build_file_delete(target)
    if action is Action.PARTITION_DELETE:
        return lc.build_partition_delete(target)
    raise ValueError(f"no lunash command for {action}")


def _partition_of(step: Step) -> str:
    if not step.partition:
        raise ValueError(f"step '{step}' names no partition")
    return step.partition


def fetch_server_cert(shell: LunaShell) -> str:
    return shell.get_file(SERVER_CERT_FILE, step="download server.pem").decode("ascii", errors="replace")
