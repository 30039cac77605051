"""The release basics: the Makefile's contract, the distributions' licenses and extras, and what the
wheel a member installs carries (and what it leaves to the lab's)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LAB_PYPROJECT = tomllib.loads((ROOT / "lab" / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
#: The AWS test doubles: in the luna-ha-lab wheel, never in the luna-ha one.
LAB_MODULES = ("cloudformation.py", "cfn_receiver.py", "localaws.py")

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@needs_make
def test_make_help_lists_every_target() -> None:
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony is not None
    targets = phony.group(1).split()
    assert {"lint", "typecheck", "functional", "clean", "venv", "sam", "wheel"} <= set(targets)

    result = make("help")

    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(targets) <= listed, sorted(set(targets) - listed)


def fake_venv(tmp_path: Path, pip_status: int, pip_output: str) -> Path:
    """A venv whose python imports anything and whose pip exits with ``pip_status``."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    say = f"echo '{pip_output}'; " if pip_output else ""
    python.write_text(
        f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then {say}exit {pip_status}; fi\nexit 0\n'
    )
    python.chmod(0o755)
    return venv


@needs_make
def test_make_venv_fails_when_pip_fails(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, 1, "ERROR: No matching distribution found for boto3")

    result = make("venv", f"VENV={venv}")

    assert result.returncode != 0
    assert "No matching distribution" in result.stdout + result.stderr
    assert not (venv / ".installed").exists()


@needs_make
def test_make_venv_passes_a_quiet_pip_that_succeeds(tmp_path: Path) -> None:
    """The noise filter itself never fails the install: pip -q usually prints nothing at all."""
    venv = fake_venv(tmp_path, 0, "")

    result = make("venv", f"VENV={venv}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (venv / ".installed").exists()


def test_license_is_an_spdx_expression_with_the_license_file() -> None:
    for pyproject in (PYPROJECT, LAB_PYPROJECT):
        project = pyproject["project"]
        assert project["license"] == "Apache-2.0"
        assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "lab" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_demo_extra_brings_the_lab_which_brings_motos_server() -> None:
    """``pip install 'luna-ha[demo]'`` installs luna-ha-lab of the same version, and it moto's server."""
    lab = LAB_PYPROJECT["project"]
    assert lab["name"] == "luna-ha-lab" and lab["version"] == VERSION
    assert PYPROJECT["project"]["optional-dependencies"]["demo"] == [f"luna-ha-lab=={VERSION}"]
    assert f"luna-ha=={VERSION}" in lab["dependencies"]
    assert any(req.startswith("moto[server]") for req in lab["dependencies"])


def build_wheels(tmp_path: Path) -> dict[str, zipfile.ZipFile]:
    """The two wheels, built as ``make wheel`` builds them but offline (the venv's setuptools) and
    from a copy of the sources, so that nothing left in ``build/`` by an earlier build can slip in."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "functions" / "luna_ha", src / "functions" / "luna_ha", ignore=ignore)
    shutil.copytree(ROOT / "lab", src / "lab", ignore=ignore)  # copies the LICENSE link's target
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip_wheel, "-w", str(dist), str(src), str(src / "lab")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = {path.name.split("-")[0]: zipfile.ZipFile(path) for path in dist.glob("*.whl")}
    assert sorted(wheels) == ["luna_ha", "luna_ha_lab"], sorted(dist.iterdir())
    return wheels


def metadata(wheel: zipfile.ZipFile) -> list[str]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return HeaderParser().parsestr(wheel.read(name).decode()).get_all("Requires-Dist") or []


def test_the_members_wheel_carries_the_simulator_but_not_the_aws_test_doubles(tmp_path: Path) -> None:
    wheels = build_wheels(tmp_path)
    member = wheels["luna_ha"].namelist()
    lab = wheels["luna_ha_lab"].namelist()

    # the appliance simulator (``luna-ha simulate``) is a feature of the product: it ships
    assert {"luna_ha/sim/server.py", "luna_ha/sim/cli.py", "luna_ha/sim/lab.py", "luna_ha/demo.py"} <= set(
        member
    )
    assert [n for n in member if n.rsplit("/", 1)[-1] in LAB_MODULES] == []
    assert [n for n in member if n.startswith("luna_ha_lab/")] == []
    assert f'luna-ha-lab=={VERSION}; extra == "demo"' in metadata(wheels["luna_ha"])
    plain = [req for req in metadata(wheels["luna_ha"]) if "extra ==" not in req]
    assert plain and not any(req.startswith(("moto", "luna-ha-lab")) for req in plain)

    assert sorted(n for n in lab if not n.startswith(f"luna_ha_lab-{VERSION}.dist-info/")) == [
        "luna_ha_lab/__init__.py",
        *(f"luna_ha_lab/{module}" for module in sorted(LAB_MODULES)),
        "luna_ha_lab/py.typed",
    ]
    assert f"luna_ha_lab-{VERSION}.dist-info/licenses/LICENSE" in lab
    assert f"luna-ha=={VERSION}" in metadata(wheels["luna_ha_lab"])


def test_changelog_has_an_unreleased_section_and_the_first_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert f"## [{PYPROJECT['project']['version']}]" in text


def test_the_function_reports_the_packages_version() -> None:
    import luna_ha

    # the Lambda is not an installed distribution: its version is the package's own constant
    assert luna_ha.__version__ == PYPROJECT["project"]["version"]
