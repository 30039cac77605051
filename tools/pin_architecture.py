"""``make build``: pin the built provider template's ``Architecture`` to the layer that was built.

SAM tells a makefile build nothing about the architecture, so the layer is built for ``LAYER_ARCH``
and records it in ``DepsLayer/python/.luna-ha-layer-arch`` (``aarch64`` or ``x86_64``). This script
checks that record against the ``ARCH`` that ``make build`` was given, then rewrites the built
template (``.aws-sam/build/template.yaml``, the one ``sam deploy`` takes) so that its
``Architecture`` parameter defaults to that architecture and allows no other: a plain
``sam deploy`` then uses the build's architecture, and a deploy that passes another one (a
``samconfig.toml`` saved for an earlier build, ``--parameter-overrides``) is refused by
CloudFormation before it changes anything. ``templates/provider.yaml`` itself is not changed.

Usage: ``python tools/pin_architecture.py <build dir> <arch>`` (arch: arm64 | x86_64).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

MARKER = Path("DepsLayer") / "python" / ".luna-ha-layer-arch"
# The layer's record (wheel platform) -> the Lambda architecture.
ARCHITECTURES = {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64"}


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags read as their long form: ``!Ref x`` ->
    ``{"Ref": "x"}``, ``!Condition c`` -> ``{"Condition": "c"}``, ``!Sub s`` -> ``{"Fn::Sub": "s"}``,
    ``!GetAtt a.b`` -> ``{"Fn::GetAtt": ["a", "b"]}``."""


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _construct)


class PinError(Exception):
    pass


def built_architecture(build_dir: Path) -> str:
    marker = build_dir / MARKER
    try:
        recorded = marker.read_text().strip()
    except OSError:
        raise PinError(f"{marker}: no layer architecture recorded (run make build)") from None
    if recorded not in ARCHITECTURES:
        raise PinError(f"{marker}: unknown architecture {recorded!r}")
    return ARCHITECTURES[recorded]


def pin(template_text: str, architecture: str) -> str:
    """The template with its ``Architecture`` parameter pinned to ``architecture``."""
    template = yaml.load(template_text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    parameter = template.get("Parameters", {}).get("Architecture")
    if not isinstance(parameter, dict):
        raise PinError("the built template has no Architecture parameter")
    if architecture not in parameter.get("AllowedValues", []):
        raise PinError(f"the template does not allow Architecture {architecture!r}")
    parameter["Default"] = architecture
    parameter["AllowedValues"] = [architecture]
    parameter["Description"] = (
        f"Pinned by make build: this build's function and layer are for {architecture}. "
        "Build again (make build ARCH=...) to deploy another architecture."
    )
    return yaml.safe_dump(template, sort_keys=False, width=1000)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("arm64", "x86_64"):
        print("usage: pin_architecture.py <build dir> arm64|x86_64", file=sys.stderr)
        return 2
    build_dir, wanted = Path(argv[0]), argv[1]
    try:
        built = built_architecture(build_dir)
        if built != wanted:
            raise PinError(f"the layer in {build_dir} was built for {built}, not ARCH={wanted}")
        template = build_dir / "template.yaml"
        template.write_text(pin(template.read_text(), built))
    except (PinError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{build_dir / 'template.yaml'}: Architecture pinned to {built} (the layer's)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
