"""The lunash command table of the simulator: canonical name -> syntax, traits and handler.

Handlers and their conventions are in ``dialogue.py``.

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
* Words of real lunash the simulator does not implement (``hsm selfTest``, ``partition show``,
  ``syslog``, ``help`` …) are known, so abbreviations are as ambiguous as on the appliance, and
  answer ``Error:  '<command>' is not available in this simulator.``
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Generator, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from luna_ha.sim.dialogue import (
    Ask,
    Context,
    Interaction,
    Reply,
    ShellCommand,
    ask_twice,
    confirm,
    fail,
)
from luna_ha.sim.state import (
    ATTEMPTS_BEFORE_ZEROIZATION,
    HSM_STORAGE_BYTES,
    PARTITION_SIZE_BYTES,
    RegisteredClient,
)
from luna_ha.sim.syntax import Arguments, OptionSpec, Syntax

NOT_IN_LIST = "(C000040A : RC_OBJECT_NOT_IN_LIST)"
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


def hsm_show(ctx: Context, args: Arguments) -> Reply:
    s, d = ctx.state, ctx.state.dialect
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
    storage = [
        ("Maximum HSM Storage Space (Bytes):", HSM_STORAGE_BYTES),
        ("Space In Use (Bytes):", s.space_in_use),
        ("Free Space Left (Bytes):", HSM_STORAGE_BYTES - s.space_in_use),
    ]
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
        password = yield ctx.ask("Please enter the HSM Administrators' password:", secret=True)
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
    ctx.state.regenerate_server_cert()
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
    if not args.has("force"):
        yield from confirm(
            ctx,
            "CAUTION:  The NTLS service will be restarted; connected clients will lose their sessions.",
            "",
            _IF_SURE,
        )
    with ctx.state.lock:
        ctx.state.ntls_bound, ctx.state.ntls_device = True, device
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
    extended = ("HTL Required: no", "OTT Expiry:   n/a") if ctx.state.dialect.extended_fields else ()
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


# -- the table ------------------------------------------------------------------------------------

_FORCE = OptionSpec("force", takes_value=False)
_CLIENT = OptionSpec("client", required=True)
_PARTITION = OptionSpec("partition", required=True)

COMMANDS: Mapping[str, ShellCommand] = {
    c.name: c
    for c in (
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
        ShellCommand(
            "partition create",
            partition_create,
            Syntax(
                (_PARTITION, OptionSpec("password", secret=True), OptionSpec("domain", secret=True), _FORCE)
            ),
            mutating=True,
        ),
        ShellCommand("partition list", partition_list),
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
}

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


def _word_tree() -> dict[str, tuple[str, ...]]:
    tree: dict[str, list[str]] = {EXIT: [], QUIT: []}
    for name in COMMANDS:
        noun, verb = name.split(" ", 1)
        tree.setdefault(noun, []).append(verb)
    for noun, verbs in NOT_SIMULATED.items():
        tree.setdefault(noun, []).extend(verbs)
    return {noun: tuple(verbs) for noun, verbs in tree.items()}


WORD_TREE: Mapping[str, tuple[str, ...]] = _word_tree()
