"""Cold start and size of what is shipped: the built function code and the built dependency layer.

Both are built as ``sam build`` builds them: the function by ``functions/Makefile`` (``luna_ha``
without what Lambda never imports, with CPython 3.13 bytecode, unchecked-hash) into a temporary
directory on every run, the layer by ``layers/deps/Makefile`` (the same bytecode) into a cache under
the temporary directory, keyed by that Makefile and ``requirements.txt`` (built once, from PyPI).

Cold start: ``import luna_ha.app`` in fresh interpreters laid out as on Lambda: ``python -S``
(neither the venv's site-packages nor the editable luna_ha), the built function first on the path,
then the built layer (for this machine's architecture), then boto3 and its dependencies linked from
the venv, standing in for the runtime's; no bytecode written (/var/task and /opt are read-only);
``LAMBDA_TASK_ROOT`` set, so powertools decides on tracing as on Lambda. Tracing off
(``POWERTOOLS_TRACE_DISABLED``: tests, local runs) and on (as deployed: ``Tracing: Active``).
Medians of N rounds, every measure once per round so that a change of load touches all alike:
the import as shipped; the same built code without its ``.pyc``; and as it was before this
project shipped bytecode (no ``.pyc``, and, emulated after the import, what the old ``app.py`` did
besides: ``Tracer()`` also when tracing is off, and crhelper's lambda/events/logs clients). Then
where the time goes, by stage and per package (``-X importtime``).

Size: the function code as built now and as ``sam build``'s python builder copied
``CodeUri: functions/`` before (its exclusion patterns); the layer with and without its bytecode.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, heading, median, note, table

# aws_lambda_builders' PythonPipWorkflow.EXCLUDED_FILES (aws-sam-cli 1.170), applied to each path
# part: what `sam build` copied of `functions/` before the function got its own Makefile.
SAM_EXCLUDED = [
    ".aws-sam",
    ".chalice",
    ".git",
    ".gitignore",
    "*.pyc",
    "__pycache__",
    "*.so",
    ".Python",
    "*.egg-info",
    "*.egg",
    "pip-log.txt",
    "pip-delete-this-directory.txt",
    "htmlcov",
    ".tox",
    ".nox",
    ".coverage",
    ".cache",
    ".pytest_cache",
    ".python-version",
    ".mypy_cache",
    ".dmypy.json",
    ".pyre",
    ".env",
    ".venv",
    "venv",
    "venv.bak",
    "env.bak",
    "ENV",
    "env",
    ".vscode",
    ".idea",
    "Makefile",  # functions/Makefile: not there before
]
#: What the Lambda runtime has besides the standard library: boto3 and its dependencies.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six", "jmespath")
LAMBDA_ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
IMPORT = "import luna_ha.app"
TIMED_IMPORT = (
    "import time; t = time.perf_counter(); import luna_ha.app; {after}print(time.perf_counter() - t)"
)
#: What the old app.py did besides the import, run after it: Tracer() also with tracing off (it
#: imported aws_xray_sdk.core), and crhelper's constructor's three clients for its polling mode.
BEFORE = (
    "from aws_lambda_powertools import Tracer\n"
    "if luna_ha.app.tracer is None: Tracer()\n"
    "import boto3\n"
    "for s in ('lambda', 'events', 'logs'): boto3.client(s)\n"
)
STAGES = (
    ("boto3", "import boto3"),
    ("paramiko", "import paramiko"),
    (
        "cryptography (x509, rsa)",
        "from cryptography import x509; from cryptography.hazmat.primitives.asymmetric import rsa",
    ),
    ("powertools Logger, Metrics", "from aws_lambda_powertools import Logger, Metrics"),
    ("crhelper", "import crhelper"),
    ("luna_ha modules", "import luna_ha.engine, luna_ha.resource, luna_ha.compose"),
    ("luna_ha.app body (Logger, Metrics, crhelper, the handler)", "import luna_ha.app"),
)
#: Measured changes, against the import as shipped (tracing off): (label, code run first).
WHAT_IF = (("paramiko without invoke (not importable)", "import sys; sys.modules['invoke'] = None\n"),)
TRACING = {"off": {"POWERTOOLS_TRACE_DISABLED": "true"}, "on": {}}


def _python313() -> str | None:
    """This interpreter when it is CPython 3.13 (the runtime's version), for the build Makefiles."""
    ok = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 13)
    return sys.executable if ok else None


def _make(directory: Path, target: str, artifacts: Path, *variables: str) -> None:
    python313 = _python313()
    subprocess.run(
        [
            *("make", "--no-print-directory", "-s", "-C", str(directory), target),
            f"ARTIFACTS_DIR={artifacts}",
            *([f"PYTHON313={python313}"] if python313 else []),
            *variables,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )


def build_function(artifacts: Path) -> Path:
    """``functions/Makefile`` into ``artifacts``, as ``sam build`` runs it."""
    _make(ROOT / "functions", "build-Function", artifacts)
    return artifacts


@contextlib.contextmanager
def built_function() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="luna-ha-bench-function-") as scratch:
        yield build_function(Path(scratch))


def layer_dir(arch: str, build: bool) -> tuple[Path | None, str]:
    """The layer as ``layers/deps/Makefile`` builds it for ``arch``: from the cache, else built into it
    (unless not ``build``: then ``.aws-sam/build/DepsLayer`` if ``make build`` made it for ``arch``)."""
    layer = ROOT / "layers" / "deps"
    digest = hashlib.sha256((layer / "requirements.txt").read_bytes() + (layer / "Makefile").read_bytes())
    cache = Path(tempfile.gettempdir()) / "luna-ha-bench" / f"layer-{arch}-{digest.hexdigest()[:16]}"
    how = f"layers/deps/Makefile for {arch} into {cache}"
    if (cache / "python" / ".luna-ha-layer-arch").is_file():
        return cache, how + " (cached)"
    if not build:
        built = ROOT / ".aws-sam" / "build" / "DepsLayer"
        marker = built / "python" / ".luna-ha-layer-arch"
        if marker.is_file() and LAMBDA_ARCH.get(marker.read_text().strip()) == arch:
            return built, "`.aws-sam/build/DepsLayer` (make build; may predate the working tree)"
        return None, "not built (--no-layer-build)"
    partial = cache.with_name(cache.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _make(layer, "build-DepsLayer", partial, f"LAYER_ARCH={arch}", f"LAYER_PIP={sys.executable} -m pip")
    partial.rename(cache)
    return cache, how


def _without_bytecode(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), symlinks=True)
    return target


def _has_bytecode(directory: Path) -> bool:
    return any(directory.rglob("*.cpython-313.pyc"))


# -- cold start -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A Lambda-like ``sys.path``: function, layer, the runtime's packages."""

    function: Path
    layer: Path
    runtime: Path

    def env(self, tracing: str, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback value
            "PYTHONPATH": os.pathsep.join(map(str, (self.function, self.layer, self.runtime))),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(self.function),
            "AWS_LAMBDA_FUNCTION_NAME": "luna-ha-provider",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "luna-ha",
            "POWERTOOLS_METRICS_NAMESPACE": "LunaHA",
            "LOG_LEVEL": "INFO",
            "LUNA_HA_RESPONSE_MARGIN_SECONDS": "30",
        }
        env.update(TRACING[tracing])
        env.update(extra)
        return env


def _runtime_packages(target: Path) -> Path:
    """Links to the venv's boto3 and its dependencies, standing in for the Lambda runtime's."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for name in RUNTIME_PACKAGES:
        (package,) = [p for p in (site / name, site / f"{name}.py") if p.exists()]
        (target / package.name).symlink_to(package)
    return target


def _python(code: str, *options: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", *options, "-c", code],
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _wall(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    _python(code, env=env)
    return time.perf_counter() - started


def _import_seconds(env: dict[str, str], before: str = "", after: str = "") -> float:
    return float(_python(before + TIMED_IMPORT.format(after=after), env=env).stdout)


@dataclass(frozen=True)
class ColdStart:
    runs: int
    how: str
    bytecode: bool
    interpreter: float
    rows: list[tuple[str, float, float]]  # label, tracing off, tracing on
    what_if: list[tuple[str, float]]
    stages: list[tuple[str, float]]
    packages: list[tuple[str, float]]
    modules: list[tuple[str, float, float]]
    total_importtime: float


def cold_start(runs: int) -> ColdStart:
    arch = LAMBDA_ARCH.get(platform.machine())
    if arch is None:
        raise RuntimeError(f"no Lambda architecture for this machine ({platform.machine()})")
    layer, how = layer_dir(arch, build=True)
    assert layer is not None
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    with built_function() as function, tempfile.TemporaryDirectory(prefix="luna-ha-bench-") as scratch:
        runtime = _runtime_packages(Path(scratch) / "runtime")
        shipped = Tree(function, layer / "python", runtime)
        bare = Tree(
            _without_bytecode(function, Path(scratch) / "function"),
            _without_bytecode(layer / "python", Path(scratch) / "layer"),
            runtime,
        )
        # Writes any missing cache of the standard library and the runtime's packages (the shipped
        # code has all of its own, and an unchecked-hash .pyc is never rewritten).
        for tracing in TRACING:
            _python(
                IMPORT, env={k: v for k, v in shipped.env(tracing).items() if k != "PYTHONDONTWRITEBYTECODE"}
            )
        stage_code = "import time\nt = time.perf_counter()\n"
        for _, code in STAGES:
            stage_code += f"{code}\nn = time.perf_counter(); print(n - t); t = n\n"
        measures = (
            ("whole process", lambda env: _wall(IMPORT, env), shipped),
            ("as shipped", _import_seconds, shipped),
            ("without .pyc", _import_seconds, bare),
            ("before", lambda env: _import_seconds(env, after=BEFORE), bare),
        )
        for _ in range(runs):
            add("interpreter", _wall("pass", shipped.env("off")))
            for name, measure, tree in measures:
                for tracing in TRACING:
                    add(f"{name} {tracing}", measure(tree.env(tracing)))
            for label, before in WHAT_IF:
                env = shipped.env("off")
                add(label, _import_seconds(env, before=before) - _import_seconds(env))
            for (name, _), value in zip(
                STAGES, _python(stage_code, env=shipped.env("off")).stdout.split(), strict=True
            ):
                add(name, float(value))
        packages, modules, total = _importtime(max(3, runs // 2), shipped.env("on"))
        bytecode = _has_bytecode(function) and _has_bytecode(layer / "python")

    labels = {
        "whole process": "`python -S -c 'import luna_ha.app'`, whole process, as shipped",
        "as shipped": "the import alone, as shipped: built function and layer with their .pyc",
        "without .pyc": "the import alone, the same built code without its .pyc",
        "before": "the import alone as before: no .pyc, Tracer() and crhelper's three clients (emulated)",
    }
    rows = [
        (label, median(samples[f"{key} off"]), median(samples[f"{key} on"])) for key, label in labels.items()
    ]
    return ColdStart(
        runs,
        how,
        bytecode,
        median(samples["interpreter"]),
        rows,
        [(label, median(samples[label])) for label, _ in WHAT_IF],
        [(name, median(samples[name])) for name, _ in STAGES],
        packages,
        modules,
        total,
    )


def _importtime(
    runs: int, env: dict[str, str]
) -> tuple[list[tuple[str, float]], list[tuple[str, float, float]], float]:
    """Self time summed per top-level package (stdlib together), and the modules of most self time;
    medians of ``runs`` runs of ``-X importtime``, in seconds."""
    stdlib = set(sys.stdlib_module_names)
    per_package: dict[str, list[float]] = {}
    per_module: dict[str, list[tuple[float, float]]] = {}
    totals: list[float] = []
    for _ in range(runs):
        output = _python(IMPORT, "-X", "importtime", env=env).stderr
        sums: dict[str, float] = {}
        total = 0.0
        for line in output.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            _, self_us, cumulative_us, name = (part.strip() for part in line.replace(":", "|", 1).split("|"))
            seconds = int(self_us) / 1e6
            root = name.split(".")[0]
            key = "(standard library)" if root in stdlib or root.startswith("_") else root
            sums[key] = sums.get(key, 0.0) + seconds
            per_module.setdefault(name, []).append((seconds, int(cumulative_us) / 1e6))
            total += seconds
        totals.append(total)
        for key, value in sums.items():
            per_package.setdefault(key, []).append(value)
    packages = sorted(((k, median(v)) for k, v in per_package.items()), key=lambda kv: -kv[1])
    modules = sorted(
        ((k, median([s for s, _ in v]), median([c for _, c in v])) for k, v in per_module.items()),
        key=lambda m: -m[1],
    )
    return packages, modules[:12], median(totals)


# -- sizes ----------------------------------------------------------------------------------------


def _zip_size(files: list[tuple[Path, str]]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            archive.write(path, name)
    return buffer.tell()


@dataclass(frozen=True)
class Size:
    files: int
    nbytes: int
    zipped: int
    parts: list[tuple[str, int, int]]  # name, files, bytes
    before: Size | None = field(default=None)  # the same before this project shipped bytecode


def _size(base: Path, files: list[Path], part: dict[Path, str], before: Size | None = None) -> Size:
    parts: dict[str, list[int]] = {}
    for p in files:
        entry = parts.setdefault(part[p], [0, 0])
        entry[0] += 1
        entry[1] += p.stat().st_size
    return Size(
        len(files),
        sum(p.stat().st_size for p in files),
        _zip_size([(p, str(p.relative_to(base))) for p in files]),
        sorted(((k, v[0], v[1]) for k, v in parts.items()), key=lambda t: -t[2]),
        before,
    )


def _sam_copied(path: Path, base: Path) -> bool:
    return not any(
        fnmatch.fnmatch(part, pattern) for part in path.relative_to(base).parts for pattern in SAM_EXCLUDED
    )


def function_size() -> Size:
    """The function code as built now, and (``before``) as ``sam build`` copied ``functions/``."""
    base = ROOT / "functions"
    old = sorted(p for p in base.rglob("*") if p.is_file() and _sam_copied(p, base))
    old_part = {}
    for p in old:
        rel = p.relative_to(base).parts
        if len(rel) > 2 and rel[1] in ("sim", "client"):
            old_part[p] = "  luna_ha/sim/, client/ (not shipped now)"
        elif rel[-1] in ("cli.py", "demo.py"):
            old_part[p] = "  luna_ha/cli.py, demo.py (not shipped now)"
        else:
            old_part[p] = "  the rest"
    before = _size(base, old, old_part)
    with built_function() as built:
        files = sorted(p for p in built.rglob("*") if p.is_file())
        part = {p: "  of which .pyc" if p.suffix == ".pyc" else "  of which .py" for p in files}
        return _size(built, files, part, before)


def layer_size(directory: Path) -> Size:
    """The layer as built, and (``before``) without its bytecode."""
    python = directory / "python"
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    part = {}
    for p in files:
        rel = p.relative_to(python).parts if p.is_relative_to(python) else p.relative_to(directory).parts
        top = rel[0]
        if top.endswith((".dist-info", ".data")):
            key = "(*.dist-info)"
        elif top.startswith("_cffi_backend") or top == "cffi":
            key = "cffi"
        elif len(rel) == 1:
            key = top.split(".")[0]
        else:
            key = top
        part[p] = "  " + key
    source_only = [p for p in files if p.suffix != ".pyc"]
    before = _size(directory, source_only, part)
    pycs = {p: "  of which .pyc" if p.suffix == ".pyc" else part[p] for p in files}
    return _size(directory, files, pycs, before)


# -- output ---------------------------------------------------------------------------------------


def print_cold_start(c: ColdStart) -> None:
    python = sys.version.split()[0]
    heading(
        f"Cold start: `{IMPORT}` from the built function and layer (python {python}; medians of {c.runs})"
    )
    rows: list[list[object]] = [["interpreter alone (`python -S -c pass`), whole process", c.interpreter, ""]]
    rows += [[label, off, on] for label, off, on in c.rows]
    print(table(["measure", "tracing off s", "tracing on (as deployed) s"], rows))
    note(f"\nlayer: {c.how}; boto3 and its dependencies: the venv's, standing in for the runtime's.")
    if not c.bytecode:
        note("WARNING: the build shipped no .pyc (no CPython 3.13 to compile them): 'as shipped' has none.")
    heading("What would change the import (as shipped, tracing off; median of the paired differences)")
    print(table(["change", "difference s"], [[label, f"{d:+.3f}"] for label, d in c.what_if]))
    heading(
        "Import time by stage, as shipped, tracing off (each stage counts what earlier ones did not import)"
    )
    print(table(["stage", "s"], [[name, f"{s:.3f}"] for name, s in c.stages]))
    total = c.total_importtime
    heading(f"`-X importtime`, as shipped, tracing on: self time per top-level package (total {total:.2f} s)")
    print(table(["package", "s"], [[name, f"{s:.3f}"] for name, s in c.packages[:12]]))
    heading("`-X importtime`, as shipped, tracing on: modules with the most self time")
    rows = [[n, f"{s:.3f}", f"{cu:.3f}"] for n, s, cu in c.modules]
    print(table(["module", "self s", "cumulative s"], rows))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}" if n < 1e7 else f"{n / 1e6:.1f}"


def _rows(label: str, size: Size, limit: int = 10) -> list[list[object]]:
    rows: list[list[object]] = [[label, size.files, _mb(size.nbytes), _mb(size.zipped)]]
    return rows + [[name, n, _mb(b), ""] for name, n, b in size.parts[:limit]]


def print_sizes(function: Size, layer: Size | None, how: str) -> None:
    heading("Size of the function code and of the dependency layer, as built now and before")
    rows = _rows("function code (functions/Makefile)", function)
    if function.before is not None:
        rows += _rows("function code before (`sam build` copied `functions/`)", function.before)
    if layer is not None:
        rows += [
            r for r in _rows("dependency layer", layer) if r[0] in ("dependency layer", "  of which .pyc")
        ]
        if layer.before is not None:
            rows += _rows("dependency layer without its .pyc (before)", layer.before)
    print(table(["what", "files", "MB", "MB zipped"], rows))
    note(f"\nlayer: {how}. Lambda quotas: 250 MB unzipped (function + layers), 50 MB zipped upload.")
