"""The release basics: the Makefile's contract, the distribution's license and extras."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

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
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_demo_extra_brings_motos_server() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(req.startswith("moto[server]") for req in extras["demo"])


def test_changelog_has_an_unreleased_section_and_the_first_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert f"## [{PYPROJECT['project']['version']}]" in text


def test_the_function_reports_the_packages_version() -> None:
    import luna_ha

    # the Lambda is not an installed distribution: its version is the package's own constant
    assert luna_ha.__version__ == PYPROJECT["project"]["version"]
