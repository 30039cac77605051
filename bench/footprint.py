"""Cold start and size: importing the Lambda handler module, the function code, the built layer.

Cold start: ``import luna_ha.app`` in fresh interpreters of the project's venv (python3.13, as the
Lambda runtime), with a region set and tracing disabled (``POWERTOOLS_TRACE_DISABLED``), medians of
N runs: the whole process, the import alone, and the import without bytecode caches for the
function and its dependencies. Lambda serves /var/task and /opt read-only and neither ``sam build``
(it excludes ``*.pyc``) nor the layer Makefile (``pip --no-compile``) ships any, so there every
cold start compiles them; the standard library's caches are there. Then which packages the import
time goes to (``-X importtime``, self time summed per top-level package) and the top modules.

Size: the function code as ``sam build`` copies ``CodeUri: functions/`` (its exclusion patterns),
and the dependency layer as ``layers/deps/Makefile`` builds it (``.aws-sam/build/DepsLayer`` when
``make build`` ran; else built once into a cache under the temporary directory, from PyPI).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, heading, median, note, table

# aws_lambda_builders' PythonPipWorkflow.EXCLUDED_FILES (aws-sam-cli 1.170), applied to each path part.
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
]
IMPORT = "import luna_ha.app"
TIMED_IMPORT = "import time; t = time.perf_counter(); import luna_ha.app; print(time.perf_counter() - t)"
STAGES = (
    ("boto3", "import boto3"),
    ("paramiko", "import paramiko"),
    (
        "cryptography (x509, rsa)",
        "from cryptography import x509; from cryptography.hazmat.primitives.asymmetric import rsa",
    ),
    ("powertools Logger, Metrics", "from aws_lambda_powertools import Logger, Metrics"),
    ("powertools Tracer() (aws_xray_sdk)", "from aws_lambda_powertools import Tracer; Tracer()"),
    ("crhelper", "import crhelper"),
    ("luna_ha modules", "import luna_ha.engine, luna_ha.resource, luna_ha.compose"),
    ("luna_ha.app body (crhelper's 3 boto3 clients, handler)", "import luna_ha.app"),
)


def _env(**extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback value
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "luna-ha",
        "POWERTOOLS_METRICS_NAMESPACE": "LunaHA",
        "LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def _python(code: str, *options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, "-c", code],
        env=env or _env(),
        cwd=tempfile.gettempdir(),  # not the repository: only what is installed is importable
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _wall(code: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    _python(code, env=env)
    return time.perf_counter() - started


def _function_root() -> Path:
    import luna_ha

    return Path(luna_ha.__file__).parents[1]


def _layer_paths() -> list[Path]:
    """The installed files of the layer's distributions (``layers/deps/requirements.txt``) in this
    venv: their top-level packages and modules (boto3 and botocore are the runtime's, not the layer's)."""
    import importlib.metadata

    names = []
    for line in (ROOT / "layers" / "deps" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split("==", 1)[0].strip())
    found: set[Path] = set()
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            top = file.parts[0]
            if top.endswith((".dist-info", ".data")) or top == ".." or top == "__pycache__":
                continue
            found.add(Path(str(dist.locate_file(top))))
    return sorted(found)


def _drop_caches(prefix: str, paths: list[Path]) -> None:
    """Remove the bytecode caches of ``paths`` (packages or modules) from a cache prefix tree."""
    for path in paths:
        for variant in {path, path.resolve()}:
            cached = Path(prefix + str(variant))
            if path.suffix == ".py":
                for pyc in cached.parent.glob(f"{path.stem}.*.pyc"):
                    pyc.unlink()
            else:
                shutil.rmtree(cached, ignore_errors=True)


@dataclass(frozen=True)
class ColdStart:
    runs: int
    interpreter: float
    process: float
    import_warm: float
    no_cache: list[tuple[str, float]]
    what_if: list[tuple[str, float]]
    stages: list[tuple[str, float]]
    packages: list[tuple[str, float]]
    modules: list[tuple[str, float, float]]
    total_importtime: float


#: Measured changes, each against the import as configured: (label, environment, code run first).
WHAT_IF: tuple[tuple[str, dict[str, str], str], ...] = (
    (
        "tracing on, as deployed with `Tracing: Active` (Tracer patches boto3 and co.)",
        {"AWS_LAMBDA_FUNCTION_NAME": "luna-ha", "POWERTOOLS_TRACE_DISABLED": ""},
        "",
    ),
    ("crhelper without its lambda/events/logs clients (AWS_SAM_LOCAL set)", {"AWS_SAM_LOCAL": "true"}, ""),
    ("paramiko without invoke (not importable)", {}, "import sys; sys.modules['invoke'] = None\n"),
)


def _import_seconds(env: dict[str, str] | None = None, before: str = "") -> float:
    return float(_python(before + TIMED_IMPORT, env=env).stdout)


def cold_start(runs: int) -> ColdStart:
    """Every measure once per round, ``runs`` rounds, so that a change of load on the machine
    touches all of them alike; the what-ifs are paired with the same round's plain import."""
    _python(IMPORT)  # writes any missing bytecode caches
    stage_code = "import time\nt = time.perf_counter()\n"
    for _, code in STAGES:
        stage_code += f"{code}\nn = time.perf_counter(); print(n - t); t = n\n"
    function, layer = [_function_root()], _layer_paths()
    cacheless = (
        ("function code", function),
        ("layer", layer),
        ("function code and layer (as on Lambda)", function + layer),
    )
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    with contextlib.ExitStack() as stack:
        # Lambda-like: no bytecode cache for what /var/task and /opt hold. A private cache prefix,
        # filled by one import, then emptied of the function's and/or the layer's caches.
        cacheless_env = {}
        for label, paths in cacheless:
            prefix = stack.enter_context(tempfile.TemporaryDirectory(prefix="luna-ha-bench-pyc-"))
            _python(IMPORT, env=_env(PYTHONPYCACHEPREFIX=prefix))
            _drop_caches(prefix, paths)
            cacheless_env[label] = _env(PYTHONPYCACHEPREFIX=prefix, PYTHONDONTWRITEBYTECODE="1")
        for _ in range(runs):
            add("interpreter", _wall("pass"))
            add("process", _wall(IMPORT))
            warm = _import_seconds()
            add("warm", warm)
            for label, env in cacheless_env.items():
                add(label, _import_seconds(env))
            for label, extra, before in WHAT_IF:
                env = {k: v for k, v in _env(**extra).items() if v}
                add(label, _import_seconds(env, before) - warm)
            for (name, _), value in zip(STAGES, _python(stage_code).stdout.split(), strict=True):
                add(name, float(value))

    packages, modules, total = _importtime(max(3, runs // 2))
    return ColdStart(
        runs,
        median(samples["interpreter"]),
        median(samples["process"]),
        median(samples["warm"]),
        [(label, median(samples[label])) for label, _ in cacheless],
        [(label, median(samples[label])) for label, _, _ in WHAT_IF],
        [(name, median(samples[name])) for name, _ in STAGES],
        packages,
        modules,
        total,
    )


def _importtime(runs: int) -> tuple[list[tuple[str, float]], list[tuple[str, float, float]], float]:
    """Self time summed per top-level package (stdlib together), and the modules of most self time;
    medians of ``runs`` runs of ``-X importtime``, in seconds."""
    stdlib = set(sys.stdlib_module_names)
    per_package: dict[str, list[float]] = {}
    per_module: dict[str, list[tuple[float, float]]] = {}
    totals: list[float] = []
    for _ in range(runs):
        output = _python(IMPORT, "-X", "importtime").stderr
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


def _shipped(path: Path, base: Path) -> bool:
    return not any(
        fnmatch.fnmatch(part, pattern) for part in path.relative_to(base).parts for pattern in SAM_EXCLUDED
    )


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


def function_size() -> Size:
    base = ROOT / "functions"
    files = sorted(p for p in base.rglob("*") if p.is_file() and _shipped(p, base))
    parts: dict[str, list[int]] = {}
    for p in files:
        rel = p.relative_to(base).parts
        if len(rel) > 2 and rel[1] in ("sim", "client", "lunash"):
            key = f"luna_ha/{rel[1]}/"
        elif rel[-1] in ("cli.py", "demo.py"):
            key = "luna_ha/cli.py, demo.py"
        else:
            key = "luna_ha/ (the rest)"
        entry = parts.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += p.stat().st_size
    return Size(
        len(files),
        sum(p.stat().st_size for p in files),
        _zip_size([(p, str(p.relative_to(base))) for p in files]),
        sorted(((k, v[0], v[1]) for k, v in parts.items()), key=lambda t: -t[2]),
    )


def layer_dir(arch: str, build: bool) -> tuple[Path | None, str]:
    built = ROOT / ".aws-sam" / "build" / "DepsLayer"
    if (built / "python").is_dir():
        return built, "`.aws-sam/build/DepsLayer` (make build)"
    requirements = ROOT / "layers" / "deps" / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "luna-ha-bench" / f"layer-{arch}-{digest}"
    how = f"layers/deps/Makefile for {arch} into {cache}"
    if (cache / "python" / ".luna-ha-layer-arch").is_file():
        return cache, how + " (cached)"
    if not build:
        return None, "not built (--no-layer-build)"
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-s",
            "-C",
            str(ROOT / "layers" / "deps"),
            "build-DepsLayer",
            f"ARTIFACTS_DIR={cache}",
            f"LAYER_ARCH={arch}",
            f"LAYER_PIP={sys.executable} -m pip",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return cache, how


def layer_size(directory: Path) -> Size:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    parts: dict[str, list[int]] = {}
    python = directory / "python"
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
        entry = parts.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += p.stat().st_size
    return Size(
        len(files),
        sum(p.stat().st_size for p in files),
        _zip_size([(p, str(p.relative_to(directory))) for p in files]),
        sorted(((k, v[0], v[1]) for k, v in parts.items()), key=lambda t: -t[2]),
    )


# -- output ---------------------------------------------------------------------------------------


def print_cold_start(c: ColdStart) -> None:
    heading(f"Cold start: `{IMPORT}` (python {sys.version.split()[0]}, venv; medians of {c.runs})")
    rows: list[list[object]] = [
        ["interpreter alone (`python -c pass`), whole process", c.interpreter],
        [f"`python -c '{IMPORT}'`, whole process", c.process],
        ["the import alone, bytecode caches present", c.import_warm],
    ]
    rows += [[f"the import alone, no bytecode cache for the {label}", s] for label, s in c.no_cache]
    print(table(["measure", "s"], rows))
    heading("What would change the import (bytecode caches present; median of the paired differences)")
    print(table(["change", "difference s"], [[label, f"{d:+.3f}"] for label, d in c.what_if]))
    heading("Import time by stage (each stage counts what earlier ones did not import)")
    print(table(["stage", "s"], [[name, f"{s:.3f}"] for name, s in c.stages]))
    heading(f"`-X importtime`: self time per top-level package (total {c.total_importtime:.2f} s)")
    print(table(["package", "s"], [[name, f"{s:.3f}"] for name, s in c.packages[:12]]))
    heading("`-X importtime`: modules with the most self time")
    rows = [[n, f"{s:.3f}", f"{cu:.3f}"] for n, s, cu in c.modules]
    print(table(["module", "self s", "cumulative s"], rows))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}" if n < 1e7 else f"{n / 1e6:.1f}"


def print_sizes(function: Size, layer: Size | None, how: str) -> None:
    heading("Size of the function code (as `sam build` copies `functions/`) and of the dependency layer")
    rows = [["function code", function.files, _mb(function.nbytes), _mb(function.zipped)]]
    rows += [[f"  {name}", n, _mb(b), ""] for name, n, b in function.parts]
    if layer is not None:
        rows.append(["dependency layer", layer.files, _mb(layer.nbytes), _mb(layer.zipped)])
        rows += [[f"  {name}", n, _mb(b), ""] for name, n, b in layer.parts[:10]]
    print(table(["what", "files", "MB", "MB zipped"], rows))
    note(f"\nlayer: {how}. Lambda quotas: 250 MB unzipped (function + layers), 50 MB zipped upload.")
