"""tools/pin_architecture.py: ``make build`` pins the built template's Architecture to the layer's,
so that a deploy of that build uses its architecture or is refused by CloudFormation."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file

REPO = Path(__file__).resolve().parents[2]
PROVIDER = REPO / "templates" / "provider.yaml"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pin_architecture", REPO / "tools" / "pin_architecture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pin_architecture = _tool()


def _load(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(text, Loader=pin_architecture._Loader)  # noqa: S506
    return loaded


def _build(tmp_path: Path, recorded: str | None) -> Path:
    build = tmp_path / "build"
    (build / "DepsLayer" / "python").mkdir(parents=True)
    if recorded is not None:
        (build / "DepsLayer" / "python" / ".luna-ha-layer-arch").write_text(recorded + "\n")
    (build / "template.yaml").write_text(PROVIDER.read_text())
    return build


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_pinned_template_allows_only_the_built_architecture_and_is_otherwise_the_same(
    architecture: str, tmp_path: Path
) -> None:
    pinned_text = pin_architecture.pin(PROVIDER.read_text(), architecture)

    pinned, source = _load(pinned_text), _load(PROVIDER.read_text())
    parameter = pinned["Parameters"]["Architecture"]
    assert (parameter["Default"], parameter["AllowedValues"]) == (architecture, [architecture])
    del pinned["Parameters"]["Architecture"], source["Parameters"]["Architecture"]
    assert pinned == source
    # Still a valid template (short-form tags written in their long form).
    path = tmp_path / "templates" / "provider.yaml"
    path.parent.mkdir()
    path.write_text(pinned_text)
    assert [str(m) for m in lint_file(path, ManualArgs(regions=["us-east-1"]))] == []


def test_make_build_pins_an_arm64_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = _build(tmp_path, "aarch64")  # what layers/deps/Makefile records for arm64

    assert pin_architecture.main([str(build), "arm64"]) == 0

    assert _load((build / "template.yaml").read_text())["Parameters"]["Architecture"]["AllowedValues"] == [
        "arm64"
    ]
    assert "pinned to arm64" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("recorded", "message"), [("x86_64", "built for x86_64, not ARCH=arm64"), (None, "run make build")]
)
def test_a_layer_of_another_or_no_architecture_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recorded: str | None, message: str
) -> None:
    build = _build(tmp_path, recorded)

    assert pin_architecture.main([str(build), "arm64"]) == 1

    assert message in capsys.readouterr().err
    assert (build / "template.yaml").read_text() == PROVIDER.read_text()


def test_make_build_runs_it_after_sam_build_with_arch() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^build:.*?\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    sam_build = next(i for i, line in enumerate(lines) if "$(SAM) build" in line)
    assert "$(SAM_VENV)/bin/python tools/pin_architecture.py .aws-sam/build $(ARCH)" in lines[sam_build + 1 :]
    # The layer records what it was built for, which the pin reads.
    assert '.luna-ha-layer-arch"' in (REPO / "layers" / "deps" / "Makefile").read_text()
