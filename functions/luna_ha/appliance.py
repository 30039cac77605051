"""One appliance over one session: observe its state, apply planned steps, fetch its server.pem.

Observation sends read-only commands only. Applying turns each planned ``Step`` into exactly one
lunash command (or one SCP upload); a failed ``hsm login`` is never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from luna_ha.clock import Deadline
from luna_ha.errors import DeadlineExceeded, SecretError
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
from luna_ha.secrets import PARTITION_SO_KEY, first_co_password
from luna_ha.shell import ApplianceShell
from luna_ha.software import Channel, Software

SERVER_CERT_FILE = "server.pem"

_GONE = frozenset({Outcome.NO_SUCH_CLIENT})


@dataclass(frozen=True)
class GroupSecrets:
    """The secret values one run needs on the appliances; never shown in a repr.

    On Luna 7 ``partition_password`` is the Crypto Officer's, and ``partition_so_password`` the
    Partition SO's (empty when the admin secret has none: only 7.x partitions need it)."""

    admin_password: str = field(repr=False)
    domain: str = field(repr=False)
    partition_password: str = field(repr=False)
    partition_so_password: str = field(default="", repr=False)

    def partition_so(self) -> str:
        """The Partition SO password; a ``SecretError`` naming the missing key when there is none."""
        if not self.partition_so_password:
            raise SecretError(
                f"the admin secret has no {PARTITION_SO_KEY}: a Luna 7 partition needs its Partition SO "
                "password"
            )
        return self.partition_so_password

    def first_co_password(self, partition: str) -> str:
        """The Crypto Officer's password between its initialization and its change (policy 21)."""
        return first_co_password(self.partition_password, partition)


@dataclass(frozen=True)
class StepInputs:
    """What a step's command is built from: the secrets, and the appliance's family."""

    secrets: GroupSecrets
    luna7: bool = False


Build = Callable[[Step, StepInputs], lc.Command]


@dataclass(frozen=True)
class StepKind:
    """Everything the engine needs to carry out one kind of planned step."""

    budget: float
    """Seconds it may take at most on a healthy appliance: no step starts without this much left."""
    build: Build | None = None
    """Its lunash command; None for an SCP upload or a record (``planner.RECORDS``)."""
    already_done: frozenset[Outcome] = frozenset()
    """Failures that mean its effect is there already (another run, or an answer that was lost)."""


def _partition_of(step: Step) -> str:
    if not step.partition:
        raise ValueError(f"step '{step}' names no partition")
    return step.partition


def _partition_create(step: Step, inputs: StepInputs) -> lc.Command:
    if inputs.luna7:  # created uninitialized; `partition init` follows
        return lc.build_partition_create_7(step.target)
    return lc.build_partition_create(step.target, inputs.secrets.partition_password, inputs.secrets.domain)


STEPS: dict[Action, StepKind] = {
    Action.HSM_INIT: StepKind(
        120.0, lambda s, k: lc.build_hsm_init(s.target, k.secrets.admin_password, k.secrets.domain)
    ),
    Action.REGEN_CERT: StepKind(60.0, lambda s, k: lc.build_regen_cert()),
    Action.NTLS_BIND: StepKind(60.0, lambda s, k: lc.build_ntls_bind()),
    Action.NTLS_RESTART: StepKind(60.0, lambda s, k: lc.build_service_restart("ntls")),
    Action.HSM_LOGIN: StepKind(20.0, lambda s, k: lc.build_hsm_login(k.secrets.admin_password)),
    Action.PARTITION_CREATE: StepKind(60.0, _partition_create),
    # Luna 7 (lunash from 7.8.1; the REST forms of these steps go to ``rest``). The partition is
    # labelled with its name, as 5.x/6.x label theirs.
    Action.PARTITION_INIT: StepKind(
        60.0,
        lambda s, k: lc.build_partition_init(s.target, s.target, k.secrets.partition_so(), k.secrets.domain),
        frozenset({Outcome.ALREADY_INITIALIZED}),
    ),
    Action.CO_INIT: StepKind(
        30.0,
        lambda s, k: lc.build_partition_init_co(
            s.target, k.secrets.partition_so(), k.secrets.first_co_password(s.target)
        ),
    ),
    Action.CO_CHANGE: StepKind(30.0),  # REST only
    Action.UPLOAD_CERT: StepKind(10.0),
    Action.CLIENT_REGISTER: StepKind(15.0, lambda s, k: lc.build_client_register(s.target, s.target)),
    Action.FILE_DELETE: StepKind(
        15.0, lambda s, k: lc.build_file_delete(s.target), frozenset({Outcome.NO_SUCH_FILE})
    ),
    Action.CLIENT_ASSIGN: StepKind(
        15.0,
        lambda s, k: lc.build_client_assign(s.target, _partition_of(s)),
        frozenset({Outcome.ALREADY_ASSIGNED}),
    ),
    Action.CLIENT_REVOKE: StepKind(
        15.0,
        lambda s, k: lc.build_client_revoke(s.target, _partition_of(s)),
        frozenset({Outcome.NOT_ASSIGNED, Outcome.NO_SUCH_CLIENT}),
    ),
    Action.CLIENT_DELETE: StepKind(
        15.0, lambda s, k: lc.build_client_delete(s.target), frozenset({Outcome.NO_SUCH_CLIENT})
    ),
    Action.PARTITION_DELETE: StepKind(60.0, lambda s, k: lc.build_partition_delete(s.target)),
    Action.ADOPT_PARTITION: StepKind(5.0),
    Action.RETAIN_PARTITION: StepKind(5.0),
    Action.FORGET_PARTITION: StepKind(5.0),
}


def observe(shell: ApplianceShell, token: str) -> ApplianceState:
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
        software=Software.parse(hsm.software_version),
        hsm_serial=hsm.serial,
        hsm_label=hsm.label,
        zeroized=hsm.zeroized,
        attempts_left=hsm.attempts_left,
        partitions=partitions,
        clients=tuple(clients),
        registrations=registrations,
    )


def read_hsm(shell: ApplianceShell, step: str) -> HsmInfo:
    """``hsm show`` again, in this session: what the zeroization guard decides on."""
    return parse_hsm_show(shell.run(lc.build_hsm_show(), step=step).text)


def read_partition_serials(shell: ApplianceShell) -> dict[str, str]:
    listed = parse_partition_list(shell.run(lc.build_partition_list(), step="read partition serial").text)
    return {p.name: p.serial for p in listed}


def apply_steps(
    shell: ApplianceShell,
    steps: Iterable[Step],
    *,
    secrets: GroupSecrets,
    certificates: Mapping[str, str],
    deadline: Deadline,
    luna7: bool = False,
    rest: Callable[[Step], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    before_step: Callable[[Step, list[Step]], None] | None = None,
    record: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Run ``steps`` in order; returns the ones done. Stops at the first failure (it raises).

    Steps that are records (``planner.RECORDS``) go to ``record``, not to the appliance, and steps
    whose channel is REST go to ``rest``."""
    done: list[Step] = []
    pending = list(steps)
    for index, step in enumerate(pending):
        kind = STEPS[step.action]
        if not deadline.allows(kind.budget):
            left = ", ".join(str(s) for s in pending[index:])
            raise DeadlineExceeded(
                f"not enough time left to start '{step}' ({deadline.remaining():.0f} s left, it may take "
                f"{kind.budget:.0f} s); a re-run will do what remains: {left}"
            )
        if before_step is not None:
            before_step(step, done)
        if step.action in RECORDS:
            if record is None:
                raise ValueError(f"step '{step}' is a record and no recorder was given")
            record(step)
        elif step.via is Channel.REST:
            if rest is None:
                raise ValueError(f"step '{step}' goes over REST and no REST session was given")
            rest(step)
        elif kind.build is None:  # the only other step without a command: the certificate's upload
            shell.put_file(uploaded_file(step.target), certificates[step.target].encode(), step=str(step))
        else:
            command = kind.build(step, StepInputs(secrets, luna7))
            shell.run(command, step=str(step), tolerate=kind.already_done)
        done.append(step)
        if on_step is not None:
            on_step(step)
    return done


def fetch_server_cert(shell: ApplianceShell) -> str:
    return shell.get_file(SERVER_CERT_FILE, step="download server.pem").decode("ascii", errors="replace")
