"""A pytest plugin: scan everything the product wrote during the functional suites for secrets.

``tests/conftest.py`` loads it (``pytest_plugins``). While each test under ``tests/functional``
runs, it learns every secret value in play and collects what the product wrote; at the test's
teardown it scans that and fails the test (an error in teardown) on any secret value or private
key body, saying where, with the secret masked. The terminal summary says how much was scanned.

Secrets learned (values of 8 characters or more): every ``password``, ``domain``, ``passphrase``
and ``private_key`` stored in Secrets Manager (moto, in process or as its local server), and every
other key there that names a password (``partitionSoPassword``: a Luna 7 Partition SO's); every
password the product derives (a Luna 7 Crypto Officer's temporary one, ``first_co_password``);
every simulated appliance's manager password (also as the ``Basic`` credentials its REST API is
sent) and REST session cookies; and every private key body published to Parameter Store.

What the product wrote, by channel:

* ``log``: every log record of every logger (the ``luna_ha`` loggers at DEBUG), with its extras
  and traceback;
* ``output``: what the test captured from stdout/stderr (also what ``capsys``/``capfd`` handed the
  test), and what the CLI commands wrote to the stream they were given;
* ``response``: every CloudFormation response document the local receiver accepted;
* ``parameter``: every String parameter written (and any SecureString but a client key);
* ``exception``: every ``LunaHAError`` raised or built, with its chained causes;
* ``journal``: what the simulated appliances recorded receiving: lunash lines, SCP transfers and
  REST requests (method, path and body, as the simulator masks them);
* ``file``: every file under the test's ``tmp_path`` (a client key file, ``*Key.pem`` with mode
  0600, may hold its own private key: that is where it belongs), and, at the end of the session,
  any file the session left in the working tree.

A private key in PEM form (``-----BEGIN ... PRIVATE KEY-----``) is a leak in any channel but its key
file, whether or not it was learned.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import io
import json
import logging
import os
import re
import stat
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PLUGIN_NAME = "luna-ha-secret-scan"
MIN_SECRET_LENGTH = 8
SECRET_KEYS = ("password", "domain", "passphrase", "private_key")
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_KEY_BODY_LINE = re.compile(r"^[A-Za-z0-9+/=]{40,}$")
_SKIP_DIRS = {".git", "__pycache__", "node_modules"}
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_MAX_FILE = 4 << 20


@dataclass
class Leak:
    channel: str
    where: str
    what: str  # which secret (its origin, never its value)
    excerpt: str  # the text around it, the secret masked

    def __str__(self) -> str:
        return f"[{self.channel}] {self.where}: {self.what} in ...{self.excerpt}..."


@dataclass
class Window:
    """What one test (or a self-test) wrote: texts by channel, exceptions, files to scan."""

    name: str
    texts: list[tuple[str, str, str]] = field(default_factory=list)  # channel, where, text
    exceptions: list[BaseException] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def add(self, channel: str, where: str, text: str) -> None:
        if text:
            self.texts.append((channel, where, text))


class SecretScan:
    """The collector: taps installed once, collecting only while a window is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.secrets: dict[str, str] = {}  # value -> where it was learned
        self.window: Window | None = None
        self.scanned: Counter[str] = Counter()
        self.tests = 0
        self.leaks: list[Leak] = []
        self.appliances: weakref.WeakSet[Any] = weakref.WeakSet()
        self._undo: list[Callable[[], None]] = []
        self._handler = _Handler(self)

    # -- learning secrets -------------------------------------------------------------------------
    def learn(self, value: object, where: str) -> None:
        if not isinstance(value, str):
            return
        values = [value] if len(value) >= MIN_SECRET_LENGTH else []
        if PEM_PRIVATE_KEY.search(value):
            # a key body: two of its lines stand for it (any part of a leaked body shows one)
            body = [line.strip() for line in value.splitlines() if _KEY_BODY_LINE.match(line.strip())]
            values += body[:1] + body[len(body) // 2 : len(body) // 2 + 1]
        with self._lock:
            for v in values:
                self.secrets.setdefault(v, where)

    def learn_document(self, text: object, where: str) -> None:
        """The secret values of a Secrets Manager document (JSON object), or the whole string."""
        if not isinstance(text, str):
            return
        try:
            document = json.loads(text)
        except ValueError:
            return
        if isinstance(document, dict):
            for key, value in document.items():
                if key in SECRET_KEYS or str(key).lower().endswith("password"):
                    self.learn(value, f"{where} key '{key}'")

    # -- collecting -------------------------------------------------------------------------------
    def add(self, channel: str, where: str, text: str) -> None:
        window = self.window
        if window is not None:
            window.add(channel, where, text)

    def add_exception(self, exc: BaseException) -> None:
        window = self.window
        if window is not None:
            window.exceptions.append(exc)

    @contextlib.contextmanager
    def open(self, name: str, paths: list[Path] | None = None) -> Iterator[Window]:
        """Collect while the block runs; the caller scans the window afterwards."""
        window = Window(name, paths=list(paths or []))
        product = logging.getLogger("luna_ha")
        level = product.level
        product.setLevel(logging.DEBUG)
        root = logging.getLogger()
        root.addHandler(self._handler)
        self.window = window
        try:
            yield window
        finally:
            self.window = None
            root.removeHandler(self._handler)
            product.setLevel(level)

    # -- scanning ---------------------------------------------------------------------------------
    def scan(self, window: Window) -> list[Leak]:
        for appliance in list(self.appliances):
            lines = "\n".join(e.line for e in appliance.journal.entries())
            window.add("journal", f"simulated appliance {appliance.hostname}", lines)
        for exc in window.exceptions:
            seen: set[int] = set()
            current: BaseException | None = exc
            while current is not None and id(current) not in seen:
                seen.add(id(current))
                window.add("exception", type(current).__name__, f"{current}\n{current!r}")
                current = current.__cause__ or current.__context__
        leaks = [leak for channel, where, text in window.texts for leak in self.find(channel, where, text)]
        for root in window.paths:
            leaks += self.scan_files(root)
        return leaks

    def scan_files(self, root: Path) -> list[Leak]:
        """Every file under ``root`` (or ``root`` itself, a file)."""
        leaks: list[Leak] = []
        for path in _files(root) if root.is_dir() else [root]:
            try:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE:
                    continue
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                continue
            key_file = path.name.endswith("Key.pem") and stat.S_IMODE(info.st_mode) == 0o600
            leaks += self.find("file", str(path), text, key_file=key_file)
        return leaks

    def find(self, channel: str, where: str, text: str, *, key_file: bool = False) -> list[Leak]:
        self.scanned[channel] += len(text)
        with self._lock:
            needles = list(self.secrets.items())
        leaks = []
        for needle, origin in needles:  # str.find per needle: far faster than one big alternation
            at = text.find(needle)
            if at >= 0 and not (key_file and "private key" in origin):
                leaks.append(Leak(channel, where, origin, self._excerpt(text, at, at + len(needle), needles)))
        if not key_file:
            for match in PEM_PRIVATE_KEY.finditer(text):
                shown = self._excerpt(text, *match.span(), needles)
                leaks.append(Leak(channel, where, "a private key (PEM)", shown))
        return leaks

    @staticmethod
    def _excerpt(text: str, start: int, end: int, needles: list[tuple[str, str]]) -> str:
        shown = text[max(0, start - 60) : start] + "<SECRET>" + text[end : end + 60]
        for needle, _ in needles:
            if needle in shown:
                shown = shown.replace(needle, "<SECRET>")
        return PEM_PRIVATE_KEY.sub("<PEM>", shown).replace("\n", "\\n")

    # -- taps -------------------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap the places secrets come from and the product writes to (undone by ``uninstall``)."""
        from moto.secretsmanager.models import SecretsManagerBackend
        from moto.ssm.models import SimpleSystemManagerBackend

        import luna_ha.appliance
        import luna_ha.cli
        import luna_ha.client.cli
        import luna_ha.secrets
        from luna_ha.errors import LunaHAError
        from luna_ha.sim.rest import RestSession
        from luna_ha.sim.server import SimulatedAppliance
        from luna_ha_lab import cfn_receiver

        scan = self

        def arguments(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return inspect.signature(function).bind_partial(*args, **kwargs).arguments

        def secret_write(original: Callable[..., Any], name_arg: str) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                bound = arguments(original, args, kwargs)
                scan.learn_document(bound.get("secret_string"), f"secret {bound.get(name_arg)}")
                return original(*args, **kwargs)

            return wrapper

        def put_parameter(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                bound = arguments(original, args, kwargs)
                name, value = str(bound.get("name")), bound.get("value")
                kind = bound.get("parameter_type")
                if kind == "SecureString" and name.endswith("/key"):
                    scan.learn(value, f"the private key of {name}")
                else:
                    scan.add(
                        "parameter", f"{kind} {name}", f"{name}\n{value}\n{bound.get('description') or ''}"
                    )
                return original(*args, **kwargs)

            return wrapper

        def appliance_init(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                scan.appliances.add(self)
                scan.learn(self.password, f"the manager password of simulated appliance {self.hostname}")
                basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
                scan.learn(basic, f"the REST Basic credentials of simulated appliance {self.hostname}")
                scan.learn(self.state.admin_password, f"the HSM Admin password of {self.hostname}")
                scan.learn(self.state.domain, f"the cloning domain of {self.hostname}")

            return wrapper

        def rest_session_init(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                scan.learn(self.token, "a REST session cookie of a simulated appliance")

            return wrapper

        def derived(original: Callable[..., str], what: str) -> Callable[..., str]:
            def wrapper(*args: Any, **kwargs: Any) -> str:
                value = original(*args, **kwargs)
                scan.learn(value, what)
                return value

            return wrapper

        def error_init(self: BaseException, *args: Any) -> None:
            Exception.__init__(self, *args)
            scan.add_exception(self)

        def received_init(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                scan.add("response", f"CloudFormation response {self.request_id}", json.dumps(self.body))

            return wrapper

        def with_tee(original: Callable[..., Any], keyword: bool) -> Callable[..., Any]:
            def wrapper(argv: Any = None, *args: Any, **kwargs: Any) -> Any:
                if keyword and kwargs.get("out") is not None:
                    kwargs["out"] = _Tee(kwargs["out"], scan, original.__qualname__)
                elif not keyword and args and args[0] is not None:
                    args = (_Tee(args[0], scan, original.__qualname__), *args[1:])
                elif not keyword and kwargs.get("out") is not None:
                    kwargs["out"] = _Tee(kwargs["out"], scan, original.__qualname__)
                if kwargs.get("err") is not None:  # the CLI's standard error, when a test gives one
                    kwargs["err"] = _Tee(kwargs["err"], scan, original.__qualname__)
                return original(argv, *args, **kwargs)

            return wrapper

        def readouterr(original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(self: Any) -> Any:
                result = original(self)
                scan.add("output", "captured by the test", f"{result.out}\n{result.err}")
                return result

            return wrapper

        self._patch(
            SecretsManagerBackend, "create_secret", secret_write(SecretsManagerBackend.create_secret, "name")
        )
        self._patch(
            SecretsManagerBackend,
            "put_secret_value",
            secret_write(SecretsManagerBackend.put_secret_value, "secret_id"),
        )
        self._patch(
            SimpleSystemManagerBackend,
            "put_parameter",
            put_parameter(SimpleSystemManagerBackend.put_parameter),
        )
        self._patch(SimulatedAppliance, "__init__", appliance_init(SimulatedAppliance.__init__))
        self._patch(RestSession, "__init__", rest_session_init(RestSession.__init__))
        # The Crypto Officer's temporary password is derived, never stored: learned as it is made,
        # wherever the product's modules took the function from.
        first_co = luna_ha.secrets.first_co_password
        learning = derived(first_co, "a Luna 7 Crypto Officer's temporary password (first_co_password)")
        for name, module in list(sys.modules.items()):  # luna_ha.appliance among them, imported above
            if name.startswith("luna_ha") and vars(module).get("first_co_password") is first_co:
                self._patch(module, "first_co_password", learning)
        self._patch(LunaHAError, "__init__", error_init)
        received = cfn_receiver.ReceivedResponse
        self._patch(received, "__init__", received_init(received.__init__))
        self._patch(luna_ha.cli, "main", with_tee(luna_ha.cli.main, keyword=False))
        self._patch(
            luna_ha.client.cli, "bootstrap_main", with_tee(luna_ha.client.cli.bootstrap_main, keyword=True)
        )
        self._patch(pytest.CaptureFixture, "readouterr", readouterr(pytest.CaptureFixture.readouterr))

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        had = name in vars(owner)
        saved = vars(owner).get(name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, saved) if had else delattr(owner, name))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


class _Handler(logging.Handler):
    def __init__(self, scan: SecretScan) -> None:
        super().__init__(logging.NOTSET)
        self.scan = scan

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage()]
            parts += [f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_FIELDS]
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                parts.append(record.stack_info)
            self.scan.add("log", f"{record.name} {record.levelname}", "\n".join(parts))
        except Exception:  # a record that cannot be formatted is logging's problem, not a leak
            self.handleError(record)


class _Tee(io.TextIOBase):
    """A stream the CLI writes to: forwarded, and collected for the scan."""

    def __init__(self, stream: Any, scan: SecretScan, where: str) -> None:
        self._stream, self._scan, self._where = stream, scan, where

    def write(self, text: str) -> int:
        self._scan.add("output", self._where, text)
        return int(self._stream.write(text))

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _files(root: Path) -> Iterator[Path]:
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d not in _SKIP_DIRS and not d.startswith(".venv")]
        for name in names:
            yield Path(directory) / name


def _working_tree(root: Path) -> set[Path]:
    ignored = {".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".aws-sam", "build", "dist"}
    found = set()
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [
            d for d in subdirectories if d not in _SKIP_DIRS | ignored and not d.startswith(".venv")
        ]
        found |= {Path(directory) / n for n in names if not n.endswith(".pyc")}
    return found


# --------------------------------------------------------------------------------------------------
# pytest hooks


def _functional(item: pytest.Item) -> bool:
    return f"{os.sep}tests{os.sep}functional{os.sep}" in str(item.path)


class _Plugin:
    def __init__(self, config: pytest.Config) -> None:
        self.scan = SecretScan()
        self.rootdir = Path(str(config.rootpath))
        self.tree = _working_tree(self.rootdir)
        self._window: contextlib.AbstractContextManager[Window] | None = None
        self._current: Window | None = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        if _functional(item):
            self._window = self.scan.open(item.nodeid)
            self._current = self._window.__enter__()
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if call.when != "teardown" or self._window is None or self._current is None:
            return
        window, self._current = self._current, None
        self._window.__exit__(None, None, None)
        self._window = None
        for key, content in report.sections:
            if key.startswith("Captured std"):
                window.add("output", key, content)
        tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
        if isinstance(tmp_path, Path):
            window.paths.append(tmp_path)
        self.scan.tests += 1
        leaks = self.scan.scan(window)
        self.scan.leaks += leaks
        if leaks and report.passed:
            report.outcome = "failed"
            shown = "\n".join(str(leak) for leak in leaks[:20])
            report.longrepr = f"secret scan: {len(leaks)} secret(s) in what the product wrote:\n{shown}"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.scan.tests == 0:
            return
        self.new_files = sorted(_working_tree(self.rootdir) - self.tree)
        leaks = [leak for path in self.new_files for leak in self.scan.scan_files(path)]
        self.scan.leaks += leaks
        if leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        scan = self.scan
        if scan.tests == 0:
            return
        terminalreporter.write_sep("-", "secret scan")
        sizes = ", ".join(
            f"{channel} {size / 1024:.0f} KiB" for channel, size in sorted(scan.scanned.items())
        )
        terminalreporter.write_line(
            f"{scan.tests} functional tests, {len(scan.secrets)} secret values known; scanned {sizes}"
        )
        new = getattr(self, "new_files", [])
        if new:
            terminalreporter.write_line(f"files the session left in the working tree: {len(new)} (scanned)")
        terminalreporter.write_line(f"leaks: {len(scan.leaks)}")
        for leak in scan.leaks[:20]:
            terminalreporter.write_line(f"  {leak}")


def pytest_configure(config: pytest.Config) -> None:
    plugin = _Plugin(config)
    plugin.scan.install()
    config.pluginmanager.register(plugin, PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is not None:
        plugin.scan.uninstall()
        config.pluginmanager.unregister(plugin)
