"""The lunash command tables of the simulator: canonical name -> syntax, traits and handler.

Handlers and their conventions are in ``dialogue.py``. One table per software generation
(``commands_for``): 5.x/6.x (``COMMANDS_5``), 7.x before 7.8.1 (``COMMANDS_7``: the 7.x
`partition create`/`partition list`, `service restart`) and 7.8.1 on (``COMMANDS_78``: also
`partition init` and `partition init co`). ``COMMANDS`` holds every canonical name.

Output text where REFERENCE.md is silent (exact strings, all chosen here):
* Input marker after every question: a line of its own, ``> ``. Answers to password questions
  are taken literally, so a ``quit`` typed at the HSM Admin password prompt is a (wrong) password.
* Caution texts for ``partition delete`` and ``ntls bind`` (unknown on 5.x); the LAST-attempt
  caution of ``hsm login``; the ``ntls bind`` success lines; ``sysconf regenCert`` prints
  ``Proceeding...`` also with ``-force``.
* Failures without a known vendor code are one ``Error:  <message>`` line: login required
  (``Error:  HSM Admin is not logged in. Use 'hsm login' first.``), HSM zeroized, duplicate
  partition, missing client certificate file (``Error:  Unable to find the client certificate
  file <h>.pem in the home directory. Copy it to the appliance with scp first.``), a certificate
  that is not PEM, a duplicate client name (``A client with the same name has already been
  registered.``), already assigned (``Error:  The client already has access to partition <p>.``),
  not assigned (``Error:  Specified partition was not assigned to client.``). Unknown partitions
  and clients use ``(C000040A : RC_OBJECT_NOT_IN_LIST)`` plus ``Specified <partition|client> does
  not exist.``
* ``hsm init`` of an initialized HSM needs HSM Admin login in the session (a soft re-init).
  ``hsm login`` when already logged in checks the password again. ``hsm logout`` always succeeds.
  ``client delete`` of a client with partitions deletes it with its assignments.
* ``my file delete -file <name> [-force]`` removes a file of the home directory (not in
  REFERENCE.md; the form of Thales' lunash reference). Without ``-force`` it asks to ``proceed``;
  a missing file is ``Error:  'my file delete' failed. File <name> does not exist.``
* 7.x (from published 7.x output where there is some, else chosen here):
  - ``hsm show``: the published 7.2 layout (Part Number, Secure Transport Mode, Tamper State,
    partition counts, environmental block, blank lines; a blank label when zeroized), seen only
    zeroized. Inferred: the partition lines when partitions exist (the 5.x form), the numeric
    attempts-left text of an initialized HSM, the label line of a labelled one. Fixed: the part
    number and environmental values (the published ones), ``RPV/Audit/Remote`` always ``No``;
    counts and storage are the model's. The banner is the dialect's.
  - ``partition create`` (published): the indented two-line ``proceed`` question and its
    indented ``> `` marker; ``-size`` is checked (a positive number of bytes) but every
    partition has the model's fixed size; ``-password``/``-domain`` are unknown options.
    Chosen: the output with ``-force``. ``partition list`` (published): the Version table.
  - ``hsm login`` without ``-password``: the question and marker indented by two (published,
    flattened: the blank lines around them are inferred).
  - ``partition init`` / ``partition init co`` (no published transcript; all chosen): the
    confirmation texts (``partition init`` borrows lunacm's), the password questions, the
    success lines, ``-label`` defaulting to the partition name, the ``already initialized``
    refusal, ``(A0 : CKR_PIN_INCORRECT)`` for a wrong Partition SO password and ``(A4 :
    CKR_PIN_LOCKED)`` once it has no attempts left. ``partition init co`` does not need the
    HSM Admin login (the Partition SO password is its authority).
  - ``service restart ntls`` (chosen text; other services are not simulated); ``sysconf
    regenCert`` and ``ntls bind`` leave a restart pending; the 7.x ``ntls bind`` lines.
  - ``client show``: no ``HTL Required``/``OTT Expiry`` lines (published, 7.8.5).
* Words of real lunash the simulator does not implement (``hsm selfTest``, ``partition show``,
  ``syslog``, ``help`` …) are known, so abbreviations are as ambiguous as on the appliance, and
  answer ``Error:  '<command>' is not available in this simulator.``
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Generator, Mapping
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from luna_ha.sim.dialogue import (
    INPUT_MARKER,
    Ask,
    Context,
    Interaction,
    Reply,
    ShellCommand,
    Stop,
    ask_twice,
    confirm,
    fail,
)
from luna_ha.sim.state import (
    ATTEMPTS_BEFORE_ZEROIZATION,
    HSM_STORAGE_BYTES,
    NO_LABEL,
    PARTITION_SIZE_BYTES,
    ApplianceModel,
    Dialect,
    RegisteredClient,
)
from luna_ha.sim.syntax import Arguments, OptionSpec, Syntax

NOT_IN_LIST = "(C000040A : RC_OBJECT_NOT_IN_LIST)"
PSO_INCORRECT = "(A0 : CKR_PIN_INCORRECT)"
PSO_LOCKED = "(A4 : CKR_PIN_LOCKED)"
NTLS_DEVICES = ("eth0", "eth1", "eth2", "eth3", "bond0", "bond1", "all")
_NAME_RE = re.compile(r"[!#$%'()*+,\-./0-9:=@A-Z\[\]^_a-z{}~]{1,64}")


def _proceed_or_quit(what: str) -> str:
    return f"Type 'proceed' to {what}, or 'quit' to quit now."


_IF_SURE = "If you are sure that you wish to proceed, then type 'proceed', otherwise type 'quit'"


def _require_initialized(ctx: Context) -> None:
    if ctx.state.zeroized:
        raise fail(f"'{ctx.name}' failed. The HSM is zeroized; initialize it with 'hsm init' first.")


def _require_login(ctx: Context) -> None:
    _require_initialized(ctx)
    if not ctx.logged_in:
        raise fail("HSM Admin is not logged in. Use 'hsm login' first.")


def _valid_name(value: str, what: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise fail(f"Invalid {what}: {value}")
    return value


def _inline_secret(args: Arguments, *names: str) -> str | None:
    """The secret given on the command line (None: ask for it); an empty one is refused."""
    given = [(name, value) for name in names if (value := args.get(name)) is not None]
    if len(given) > 1:
        raise fail(f"Use only one of {' and '.join('-' + name for name, _ in given)}.")
    if given and not given[0][1]:
        raise fail(f"A value is required for -{given[0][0]}.")
    return given[0][1] if given else None


def _password_and_domain(
    ctx: Context, args: Arguments, password_options: tuple[str, ...], password_prompt: str, domain_prompt: str
) -> Generator[Ask, str, tuple[str, str]]:
    """The password, then the cloning domain, of what ``hsm init`` / ``partition create`` initialize:
    each from the command line, else asked for twice."""
    password = _inline_secret(args, *password_options)
    if password is None:
        password = yield from ask_twice(ctx, password_prompt, "Please re-enter password to confirm:")
    domain = _inline_secret(args, "domain")
    if domain is None:
        domain = yield from ask_twice(ctx, domain_prompt, "Please re-enter cloning domain to confirm:")
    return password, domain


def _client(ctx: Context, name: str) -> RegisteredClient:
    client = ctx.state.clients.get(name)
    if client is None:
        raise fail(f"'{ctx.name}' failed. {NOT_IN_LIST}", "Specified client does not exist.")
    return client


def _require_partition(ctx: Context, name: str) -> None:
    if name not in ctx.state.partitions:
        raise fail(f"'{ctx.name}' failed. {NOT_IN_LIST}", "Specified partition does not exist.")


# -- hsm ------------------------------------------------------------------------------------------


def _storage(s: ApplianceModel) -> list[tuple[str, int]]:
    return [
        ("Maximum HSM Storage Space (Bytes):", HSM_STORAGE_BYTES),
        ("Space In Use (Bytes):", s.space_in_use),
        ("Free Space Left (Bytes):", HSM_STORAGE_BYTES - s.space_in_use),
    ]


def hsm_show(ctx: Context, args: Arguments) -> Reply:
    s, d = ctx.state, ctx.state.dialect
    if d.family >= 7:
        return _hsm_show_7(ctx)
    attempts = "HSM IS ZEROIZED !!!!" if s.zeroized else f"{s.attempts_left} before HSM zeroization!"
    rows: list[tuple[str, str]] = [
        ("HSM Label:", s.label),
        ("Serial #:", s.serial),
        ("Firmware:", d.firmware),
        (d.model_label, d.model),
        ("Authentication Method:", "Password keys"),
        ("HSM Admin login status:", "Logged In" if ctx.logged_in else "Not Logged In"),
        ("HSM Admin login attempts left:", attempts),
        ("RPV Initialized:", "No"),
    ]
    if d.extended_fields:
        rows += [("Audit Role Initialized:", "No"), ("Remote Login Initialized:", "No")]
    rows.append(("Manually Zeroized:", "No"))
    partitions = [f"   Partition: {p.serial},     Name: {p.name}" for p in s.partitions.values()]
    storage = _storage(s)
    return Reply(
        (
            "   Appliance Details:",
            "   ==================",
            f"   {'Software Version:':<33}{d.software_version}",
            "",
            "   HSM Details:",
            "   ============",
            *(f"   {key:<36}{value}" for key, value in rows),
            "",
            "   Partitions created on HSM:",
            "   ==========================",
            *(partitions or ["   There are no partitions."]),
            "",
            "   FIPS 140-2 Operation:",
            "   =====================",
            "   The HSM is NOT in FIPS 140-2 approved operation mode.",
            "",
            "   HSM Storage Information:",
            "   ========================",
            *(f"   {key:<37}{value}" for key, value in storage),
        )
    )


#: 7.x `hsm show` values the model does not hold (those of a Luna K7 appliance's published output).
HSM_PART_NUMBER_7 = "808-000066-001"
_ENVIRONMENT_7 = (
    ("Battery Voltage:", "3.093 V"),
    ("Battery Warning Threshold Voltage:", "2.750 V"),
    ("System Temp:", "35 deg. C"),
    ("System Temp Warning Threshold:", "75 deg. C"),
)


def _hsm_show_7(ctx: Context) -> Reply:
    """Luna Network HSM 7 `hsm show`: the published 7.2 layout, with this appliance's values."""
    s, d = ctx.state, ctx.state.dialect
    attempts = "HSM IS ZEROIZED !!!!" if s.zeroized else f"{s.attempts_left} before HSM zeroization!"
    label = "" if s.zeroized or s.label == NO_LABEL else s.label
    rows: list[tuple[str, str]] = [
        ("HSM Label:", label),
        ("Serial #:", s.serial),
        ("Firmware:", d.firmware),
        (d.model_label, d.model),
        ("HSM Part Number:", HSM_PART_NUMBER_7),
        ("Authentication Method:", "Password"),
        ("HSM Admin login status:", "Logged In" if ctx.logged_in else "Not Logged In"),
        ("HSM Admin login attempts left:", attempts),
        ("RPV Initialized:", "No"),
        ("Audit Role Initialized:", "No"),
        ("Remote Login Initialized:", "No"),
        ("Manually Zeroized:", "No"),
        ("Secure Transport Mode:", "No"),
        ("HSM Tamper State:", "No tamper(s)"),
    ]
    partitions = [f"   Partition: {p.serial},     Name: {p.name}" for p in s.partitions.values()]
    counts = [
        ("Number of partitions allowed:", s.max_partitions),
        ("Number of partitions created:", len(s.partitions)),
    ]
    storage = _storage(s)
    return Reply(
        (
            "",
            "   Appliance Details:",
            "   ==================",
            f"   {'Software Version:':<33}{d.software_version}",
            "",
            "   HSM Details:",
            "   ============",
            *(f"   {key:<36}{value}".rstrip() for key, value in rows),
            "",
            "   Partitions created on HSM:",
            "   ==============================",
            *(partitions or ["   There are no partitions."]),
            "",
            "",
            *(f"   {key:<37}{value}" for key, value in counts),
            "",
            "   FIPS 140-2 Operation:",
            "   =====================",
            "   The HSM is NOT in FIPS 140-2 approved operation mode.",
            "",
            "   HSM Storage Information:",
            "   ========================",
            *(f"   {key:<37}{value}" for key, value in storage),
            "",
            "   Environmental Information on HSM:",
            "   =================================",
            *(f"   {key:<37}{value}" for key, value in _ENVIRONMENT_7),
            "",
            "",
        )
    )


def hsm_init(ctx: Context, args: Arguments) -> Interaction:
    if not ctx.state.zeroized and not ctx.logged_in:
        raise fail("The HSM is already initialized. Log in as HSM Admin ('hsm login') to re-initialize it.")
    label = _valid_name(args["label"], "label")
    password, domain = yield from _password_and_domain(
        ctx,
        args,
        ("password", "sopw"),
        "Please enter a password for the HSM Administrator:",
        "Please enter a cloning domain to use for initializing this HSM:",
    )
    if not args.has("force"):
        yield from confirm(
            ctx,
            "",
            "CAUTION:  Are you sure you wish to initialize this HSM?",
            "",
            _proceed_or_quit("initialize the HSM"),
        )
    with ctx.state.lock:
        if not ctx.state.zeroized and not ctx.logged_in:
            raise fail(
                "The HSM is already initialized. Log in as HSM Admin ('hsm login') to re-initialize it."
            )
        ctx.state.initialize(label, password, domain)
    return ctx.done()


_LAST_ATTEMPT = (
    "CAUTION:  This is your LAST available HSM Admin login attempt before the HSM is zeroized.",
    "          If you enter an incorrect password, all partitions and keys on the HSM are destroyed.",
    "",
    _IF_SURE,
)


def hsm_login(ctx: Context, args: Arguments) -> Interaction:
    s = ctx.state
    _require_initialized(ctx)
    if s.attempts_left == 1:
        yield from confirm(ctx, *_LAST_ATTEMPT)
    password = _inline_secret(args, "password")
    if password is None:
        question = "Please enter the HSM Administrators' password:"
        if s.family >= 7:
            password = yield ctx.ask(f"  {question}", secret=True, marker=f"  {INPUT_MARKER}")
        else:
            password = yield ctx.ask(question, secret=True)
    with s.lock:
        _require_initialized(ctx)
        expected = s.admin_password or ""
        if hmac.compare_digest(password.encode(), expected.encode()):
            s.attempts_left = ATTEMPTS_BEFORE_ZEROIZATION
            ctx.login.generation = s.generation
            return ctx.done()
        s.attempts_left -= 1
        if s.attempts_left <= 0:
            s.zeroize()
            raise fail("'hsm login' failed. (30000F : LUNA_RET_SO_LOGIN_FAILURE_THRESHOLD)")
        raise fail("'hsm login' failed. (A00000 : LUNA_RET_UM_PIN_INCORRECT)")


def hsm_logout(ctx: Context, args: Arguments) -> Reply:
    ctx.login.generation = None
    return ctx.done()


# -- sysconf, ntls --------------------------------------------------------------------------------

_REGEN_WARNING = (
    "WARNING !!  This command will overwrite the current server certificate and private key.",
    "            All clients will have to be re-configured with this new server certificate.",
    "",
    _IF_SURE,
)


def sysconf_regen_cert(ctx: Context, args: Arguments) -> Interaction:
    if not args.has("force"):
        yield from confirm(ctx, *_REGEN_WARNING)
    with ctx.state.lock:
        ctx.state.regenerate_server_cert()
        if ctx.state.family >= 7:
            ctx.state.ntls_restart_pending = True
    return Reply(
        (
            "Proceeding...",
            "'sysconf regenCert' successful. NTLS must be (re)started before clients can connect.",
            "",
            "Please use the 'ntls show' command to ensure that NTLS is bound to an appropriate",
            "network device or IP address/hostname for the network device(s) NTLS should be",
            "active on. Use 'ntls bind' to change this binding if necessary.",
        )
    )


def ntls_bind(ctx: Context, args: Arguments) -> Interaction:
    device = args.positionals[0].lower()
    if device not in NTLS_DEVICES:
        raise fail(f"Invalid network device: {args.positionals[0]} (one of: {', '.join(NTLS_DEVICES)})")
    seven = ctx.state.family >= 7
    if not args.has("force"):
        yield from confirm(
            ctx,
            "CAUTION:  The new binding takes effect when the NTLS service is restarted."
            if seven
            else "CAUTION:  The NTLS service will be restarted; connected clients will lose their sessions.",
            "",
            _IF_SURE,
        )
    with ctx.state.lock:
        ctx.state.ntls_bound, ctx.state.ntls_device = True, device
        if seven:
            ctx.state.ntls_restart_pending = True
    if seven:
        return Reply(
            (
                f"NTLS binding set to network device {device}.",
                "NTLS must be restarted for the new binding to take effect: use 'service restart ntls'.",
            )
        )
    return Reply(
        (
            f"NTLS binding set to network device {device}.",
            "Restarting NTLS service...",
            f"Success: NTLS binding to network device {device} is active.",
        )
    )


# -- partitions -----------------------------------------------------------------------------------


def partition_create(ctx: Context, args: Arguments) -> Interaction:
    s = ctx.state
    _require_login(ctx)
    name = _valid_name(args["partition"], "partition name")

    def check() -> None:
        if name in s.partitions:
            raise fail(f"'partition create' failed. A partition named {name} already exists.")
        if len(s.partitions) >= s.max_partitions:
            raise fail("'partition create' failed. (CKR_LICENSE_CAPACITY_EXCEEDED)")

    check()
    ctx.say(f"On completion, you will have this number of partitions: {len(s.partitions) + 1}", "")
    password, domain = yield from _password_and_domain(
        ctx,
        args,
        ("password",),
        "Please enter a password for the partition:",
        "Please enter a cloning domain to use for initializing this partition:",
    )
    if not args.has("force"):
        yield from confirm(ctx, "", _proceed_or_quit("create the initialized partition"))
    with s.lock:
        _require_login(ctx)
        check()
        s.add_partition(name, password, domain)
    return ctx.done()


def partition_list(ctx: Context, args: Arguments) -> Reply:
    rows = [
        f" {p.serial:<12} {p.name:<24} {p.objects:<11} {PARTITION_SIZE_BYTES:<10} {p.used_bytes:<9} "
        f"{PARTITION_SIZE_BYTES - p.used_bytes}"
        for p in ctx.state.partitions.values()
    ]
    if not rows:
        return Reply(("There are no partitions.",))
    return Reply(
        (
            " " * 54 + "Storage (bytes)",
            " " * 48 + "-" * 28,
            " Partition    Name                     Objects     Total      Used      Free",
            " " + "=" * 75,
            *rows,
        )
    )


def partition_delete(ctx: Context, args: Arguments) -> Interaction:
    name = args["partition"]
    _require_login(ctx)
    _require_partition(ctx, name)
    if not args.has("force"):
        yield from confirm(
            ctx,
            f"CAUTION:  Are you sure you wish to delete the partition named: {name}",
            "          All objects in the partition will be destroyed.",
            "",
            _proceed_or_quit("delete the partition"),
        )
    with ctx.state.lock:
        _require_login(ctx)
        _require_partition(ctx, name)
        ctx.state.remove_partition(name)
    return ctx.done()


SERVICES = ("ntls",)


def service_restart(ctx: Context, args: Arguments) -> Reply:
    """7.x `service restart <service>`; only NTLS is simulated: it starts serving the current
    certificate and binding (``ntls_restart_pending`` clears)."""
    service = args.positionals[0].lower()
    if service not in SERVICES:
        raise fail(f"'{ctx.name} {args.positionals[0]}' is not available in this simulator.")
    with ctx.state.lock:
        ctx.state.ntls_restart_pending = False
    return ctx.done("Restarting the NTLS service...", "NTLS service restarted.")


def _done_7(ctx: Context) -> Reply:
    """A 7.x success: the success line, then two blank lines before the result."""
    return Reply((f"'{ctx.name}' successful.", ""))


_CREATE_QUESTION_7 = (
    "",
    "",
    "          Type 'proceed' to create the partition, or",
    "          'quit' to quit now.",
)
_CREATE_MARKER_7 = "          " + INPUT_MARKER


def _partition_size(args: Arguments) -> None:
    size = args.get("size")
    if size is not None and not (size.isascii() and size.isdigit() and int(size) > 0):
        raise fail(f"Invalid partition size: {size} (a number of bytes)")


def partition_create_7(ctx: Context, args: Arguments) -> Interaction:
    """7.x: an uninitialized partition (no label, Partition SO, domain or Crypto Officer)."""
    s = ctx.state
    _require_login(ctx)
    name = _valid_name(args["partition"], "partition name")
    _partition_size(args)

    def check() -> None:
        if name in s.partitions:
            raise fail(f"'partition create' failed. A partition named {name} already exists.")
        if len(s.partitions) >= s.max_partitions:
            raise fail("'partition create' failed. (CKR_LICENSE_CAPACITY_EXCEEDED)")

    check()
    if not args.has("force"):
        yield from confirm(ctx, *_CREATE_QUESTION_7, marker=_CREATE_MARKER_7)
    with s.lock:
        _require_login(ctx)
        check()
        s.add_uninitialized_partition(name)
    return _done_7(ctx)


def partition_list_7(ctx: Context, args: Arguments) -> Reply:
    rows = [
        f"{p.serial:<19}  {p.name:<32}  {p.version:<11}  {p.objects:>7}  {PARTITION_SIZE_BYTES:>7}  "
        f"{p.used_bytes:>7}  {PARTITION_SIZE_BYTES - p.used_bytes:>7}"
        for p in ctx.state.partitions.values()
    ]
    if not rows:
        return Reply(("There are no partitions.",))
    return Reply(
        (
            " " * 78 + "Storage (bytes)",
            " " * 55 + "Partition    " + "-" * 34,
            "Partition            Name                              Version      "
            "Objects  Total     Used     Free",
            "  ".join("=" * width for width in (19, 32, 11, 7, 7, 7, 7)),
            *rows,
        )
    )


def _already_initialized(name: str) -> Stop:
    return fail(
        f"'partition init' failed. Partition {name} is already initialized. lunash initializes a "
        "partition only once; re-initialize it (erasing it) from a client with lunacm."
    )


_INIT_WARNING_7 = (
    "",
    "  You are about to initialize the partition.",
    "  All contents of the partition will be destroyed.",
    "",
    "  Are you sure you wish to continue?",
    "",
)
_INIT_MARKER_7 = "  Type 'proceed' to continue, or 'quit' to quit now ->"


def partition_init(ctx: Context, args: Arguments) -> Interaction:
    """7.8: the first initialization of a partition (label, Partition SO password, cloning domain)."""
    s, name = ctx.state, args["partition"]
    _require_login(ctx)
    _require_partition(ctx, name)

    def check() -> None:
        if s.partitions[name].initialized:
            raise _already_initialized(name)

    check()
    label = _valid_name(args.get("label") or name, "label")
    password, domain = yield from _password_and_domain(
        ctx,
        args,
        ("password",),
        "Please enter a password for the Partition SO:",
        "Please enter a cloning domain to use for initializing this partition:",
    )
    if not args.has("force"):
        yield from confirm(ctx, *_INIT_WARNING_7, marker=_INIT_MARKER_7)
    with s.lock:
        _require_login(ctx)
        _require_partition(ctx, name)
        check()
        s.init_partition(name, label, password, domain)
    return _done_7(ctx)


def partition_init_co(ctx: Context, args: Arguments) -> Interaction:
    """7.8: set the Crypto Officer's password with the Partition SO's (``-psopin``)."""
    s, name = ctx.state, args["partition"]
    _require_initialized(ctx)
    _require_partition(ctx, name)

    def check() -> None:
        partition = s.partitions[name]
        if not partition.initialized:
            raise fail(
                f"'{ctx.name}' failed. Partition {name} is not initialized. Use 'partition init' first."
            )
        if partition.so_attempts_left <= 0:
            raise fail(f"'{ctx.name}' failed. {PSO_LOCKED}", "The Partition SO is locked out.")

    check()
    so_password = _inline_secret(args, "psopin")
    if so_password is None:
        so_password = yield ctx.ask("Please enter the Partition SO password:", secret=True)
    co_password = _inline_secret(args, "copin")
    if co_password is None:
        co_password = yield from ask_twice(
            ctx, "Please enter a password for the Crypto Officer:", "Please re-enter password to confirm:"
        )
    if not args.has("force"):
        yield from confirm(
            ctx,
            "",
            f"CAUTION:  Are you sure you wish to initialize the Crypto Officer of partition {name}?",
            "",
            _proceed_or_quit("initialize the Crypto Officer"),
        )
    with s.lock:
        _require_initialized(ctx)
        _require_partition(ctx, name)
        check()
        if not s.verify_partition_so(name, so_password):
            if s.partitions[name].so_attempts_left <= 0:
                raise fail(f"'{ctx.name}' failed. {PSO_LOCKED}", "The Partition SO is locked out.")
            raise fail(f"'{ctx.name}' failed. {PSO_INCORRECT}")
        s.init_co(name, co_password)
    return _done_7(ctx)


# -- clients --------------------------------------------------------------------------------------


def client_register(ctx: Context, args: Arguments) -> Reply:
    s, name = ctx.state, args["client"]
    hostname, ip = args.get("hostname"), args.get("ip")
    if (hostname is None) == (ip is None):
        raise fail("Specify exactly one of -hostname and -ip.")
    target = hostname or ip or ""
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise fail(f"Invalid IP address: {ip}") from None
    with s.lock:
        if name in s.clients:
            raise fail("'client register' failed. A client with the same name has already been registered.")
        if any(c.hostname == target for c in s.clients.values()):
            what = "hostname" if ip is None else "IP address"
            raise fail(
                f"'client register' failed. A client with the same {what} has already been registered."
            )
        pem = s.files.get(f"{target}.pem")
        if pem is None:
            raise fail(
                f"Unable to find the client certificate file {target}.pem in the home directory. "
                "Copy it to the appliance with scp first."
            )
        try:
            der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        except ValueError:
            raise fail(f"'client register' failed. {target}.pem is not a PEM certificate.") from None
        s.clients[name] = RegisteredClient(name, target, ip is not None, der)
    return ctx.done()


def client_assign_partition(ctx: Context, args: Arguments) -> Reply:
    with ctx.state.lock:
        client, partition = _client(ctx, args["client"]), args["partition"]
        _require_partition(ctx, partition)
        if partition in client.partitions:
            raise fail(f"The client already has access to partition {partition}.")
        client.partitions.append(partition)
    return ctx.done()


def client_revoke_partition(ctx: Context, args: Arguments) -> Reply:
    with ctx.state.lock:
        client, partition = _client(ctx, args["client"]), args["partition"]
        if partition not in client.partitions:
            raise fail("Specified partition was not assigned to client.")
        client.partitions.remove(partition)
    return ctx.done()


def client_list(ctx: Context, args: Arguments) -> Reply:
    names = list(ctx.state.clients)
    if not names:
        return Reply(("No clients are registered.",))
    return Reply(tuple(f"registered client {i}: {name}" for i, name in enumerate(names, 1)))


def client_show(ctx: Context, args: Arguments) -> Reply:
    client = _client(ctx, args["client"])
    d = ctx.state.dialect
    extended = ("HTL Required: no", "OTT Expiry:   n/a") if d.extended_fields and d.family < 7 else ()
    partitions = ", ".join(f'"{p}"' for p in client.partitions) or "<none>"
    return Reply(
        (
            f"ClientID:     {client.name}",
            f"Hostname:     {client.hostname}",
            *extended,
            f"Partitions:   {partitions}",
        )
    )


def client_delete(ctx: Context, args: Arguments) -> Interaction:
    name = args["client"]
    _client(ctx, name)
    if not args.has("force"):
        yield from confirm(
            ctx,
            f"CAUTION:  Are you sure you wish to delete client named: {name}",
            "",
            _proceed_or_quit("delete the client"),
        )
    with ctx.state.lock:
        _client(ctx, name)
        del ctx.state.clients[name]
    return ctx.done()


def client_fingerprint(ctx: Context, args: Arguments) -> Reply:
    return Reply((f"Certificate fingerprint: {_client(ctx, args['client']).fingerprint}",))


# -- files in the manager's home directory ------------------------------------------------------


def my_file_delete(ctx: Context, args: Arguments) -> Interaction:
    name = args["file"]
    if name not in ctx.state.files:
        raise fail(f"'my file delete' failed. File {name} does not exist.")
    if not args.has("force"):
        yield from confirm(
            ctx,
            f"CAUTION:  Are you sure you wish to delete the file {name}?",
            "",
            _proceed_or_quit("delete it"),
        )
    with ctx.state.lock:
        if ctx.state.files.pop(name, None) is None:
            raise fail(f"'my file delete' failed. File {name} does not exist.")
    return ctx.done()


# -- the tables -----------------------------------------------------------------------------------

_FORCE = OptionSpec("force", takes_value=False)
_CLIENT = OptionSpec("client", required=True)
_PARTITION = OptionSpec("partition", required=True)


def _table(*commands: ShellCommand) -> Mapping[str, ShellCommand]:
    return MappingProxyType({c.name: c for c in commands})


_SHARED_BEFORE = (
    ShellCommand("hsm show", hsm_show),
    ShellCommand(
        "hsm init",
        hsm_init,
        Syntax(
            (
                OptionSpec("label", required=True),
                OptionSpec("domain", secret=True),
                OptionSpec("password", secret=True),
                OptionSpec("sopw", secret=True),
                _FORCE,
            )
        ),
        mutating=True,
    ),
    ShellCommand("hsm login", hsm_login, Syntax((OptionSpec("password", secret=True),)), auth=True),
    ShellCommand("hsm logout", hsm_logout, auth=True),
    ShellCommand("sysconf regenCert", sysconf_regen_cert, Syntax((_FORCE,)), mutating=True),
    ShellCommand("ntls bind", ntls_bind, Syntax((_FORCE,), positionals=("device",)), mutating=True),
)
_SHARED_AFTER = (
    ShellCommand("partition delete", partition_delete, Syntax((_PARTITION, _FORCE)), mutating=True),
    ShellCommand(
        "client register",
        client_register,
        Syntax((_CLIENT, OptionSpec("hostname"), OptionSpec("ip"))),
        mutating=True,
    ),
    ShellCommand(
        "client assignPartition", client_assign_partition, Syntax((_CLIENT, _PARTITION)), mutating=True
    ),
    ShellCommand(
        "client revokePartition", client_revoke_partition, Syntax((_CLIENT, _PARTITION)), mutating=True
    ),
    ShellCommand("client list", client_list),
    ShellCommand("client show", client_show, Syntax((_CLIENT,))),
    ShellCommand("client delete", client_delete, Syntax((_CLIENT, _FORCE)), mutating=True),
    ShellCommand("client fingerprint", client_fingerprint, Syntax((_CLIENT,))),
    ShellCommand(
        "my file delete",
        my_file_delete,
        Syntax((OptionSpec("file", required=True), _FORCE)),
        mutating=True,
    ),
)

#: Luna SA 5.x / 6.x: `partition create` initializes the partition with its password and domain.
COMMANDS_5: Mapping[str, ShellCommand] = _table(
    *_SHARED_BEFORE,
    ShellCommand(
        "partition create",
        partition_create,
        Syntax((_PARTITION, OptionSpec("password", secret=True), OptionSpec("domain", secret=True), _FORCE)),
        mutating=True,
    ),
    ShellCommand("partition list", partition_list),
    *_SHARED_AFTER,
)

_COMMANDS_7 = (
    *_SHARED_BEFORE,
    ShellCommand("service restart", service_restart, Syntax(positionals=("service",)), mutating=True),
    ShellCommand(
        "partition create",
        partition_create_7,
        Syntax((_PARTITION, OptionSpec("size"), _FORCE)),
        mutating=True,
    ),
    ShellCommand("partition list", partition_list_7),
    *_SHARED_AFTER,
)
_PARTITION_INIT_7 = (
    ShellCommand(
        "partition init",
        partition_init,
        Syntax(
            (
                _PARTITION,
                OptionSpec("label"),
                OptionSpec("password", secret=True),
                OptionSpec("domain", secret=True),
                _FORCE,
            )
        ),
        mutating=True,
    ),
    ShellCommand(
        "partition init co",
        partition_init_co,
        Syntax((_PARTITION, OptionSpec("psopin", secret=True), OptionSpec("copin", secret=True), _FORCE)),
        mutating=True,
    ),
)
#: Luna Network HSM 7 before 7.8.1: partitions are created uninitialized; lunash cannot initialize them.
COMMANDS_7: Mapping[str, ShellCommand] = _table(*_COMMANDS_7)
#: Luna Network HSM 7.8.1 on: lunash also has `partition init` and `partition init co`.
COMMANDS_78: Mapping[str, ShellCommand] = _table(*_COMMANDS_7, *_PARTITION_INIT_7)

#: Every canonical command any dialect knows (the 5.x/6.x handler where two dialects differ): the
#: names faults and journals use.
COMMANDS: Mapping[str, ShellCommand] = MappingProxyType({**COMMANDS_78, **COMMANDS_5})


def commands_for(dialect: Dialect) -> Mapping[str, ShellCommand]:
    """The command table of one appliance software generation."""
    if dialect.family < 7:
        return COMMANDS_5
    return COMMANDS_78 if dialect.lunash_partition_init else COMMANDS_7


#: Shell words that are not commands of the table.
EXIT, QUIT = "exit", "quit"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Real lunash words the simulator knows but does not implement (keeps abbreviations honest).
NOT_SIMULATED: Mapping[str, tuple[str, ...]] = {
    "hsm": _words(
        "backup changePolicy changePw displayLicenses restore selfTest showMechanism showPolicies "
        "supportInfo update zeroize"
    ),
    "partition": _words(
        "activate backup changePolicy changePw clear deactivate resize restore show showContents showPolicies"
    ),
    "ntls": _words("information ipcheck show"),
    "sysconf": _words(
        "appliance config fingerprint forceSOLogin hwcheck license ntp show snmp ssh time timezone"
    ),
    "my": (
        "file list",
        "file clear",
        "password set",
        "public-key add",
        "public-key delete",
        "public-key list",
    ),
    **dict.fromkeys(_words("audit help network package service status syslog token user webserver"), ()),
}
#: 7.x: `service` has verbs (`service restart` is simulated).
_NOT_SIMULATED_7: Mapping[str, tuple[str, ...]] = {
    **NOT_SIMULATED,
    "service": _words("list start status stop"),
}


def _word_tree(
    commands: Mapping[str, ShellCommand], not_simulated: Mapping[str, tuple[str, ...]]
) -> Mapping[str, tuple[str, ...]]:
    tree: dict[str, list[str]] = {EXIT: [], QUIT: []}
    for name in commands:
        noun, verb = name.split(" ", 1)
        tree.setdefault(noun, []).append(verb)
    for noun, verbs in not_simulated.items():
        tree.setdefault(noun, []).extend(verbs)
    return MappingProxyType({noun: tuple(verbs) for noun, verbs in tree.items()})


WORD_TREE: Mapping[str, tuple[str, ...]] = _word_tree(COMMANDS_5, NOT_SIMULATED)
_WORD_TREE_7 = _word_tree(COMMANDS_7, _NOT_SIMULATED_7)
_WORD_TREE_78 = _word_tree(COMMANDS_78, _NOT_SIMULATED_7)


def word_tree_for(dialect: Dialect) -> Mapping[str, tuple[str, ...]]:
    """The command words of one appliance software generation (its table and its known words)."""
    if dialect.family < 7:
        return WORD_TREE
    return _WORD_TREE_78 if dialect.lunash_partition_init else _WORD_TREE_7
