"""The house's rules, read from the source: layers, no import cycle, who may import what.

Every ``import`` under ``motionflow/`` counts, those inside functions and under
``TYPE_CHECKING`` included: a lazy import that climbs the house is still a climb. The layers
are drawn in docs/architecture.md; ``python scripts/layers.py`` prints them from the source.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from layers import LAYERS, Edge, cycles, imports_of_package, layer_of


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return imports_of_package()


def _show(found: list[Edge]) -> str:
    return "\n".join(f"  {e.where}: {e.source} imports {e.target}" for e in found)


def test_every_module_has_a_layer(edges: list[Edge]) -> None:
    modules = {e.source for e in edges} | {e.target for e in edges}
    homeless = sorted(m for m in modules if layer_of(m) is None)
    assert not homeless, f"modules in no layer of scripts/layers.py: {homeless}"


def test_imports_go_down_the_layers(edges: list[Edge]) -> None:
    upward = [
        e
        for e in edges
        if (a := layer_of(e.source)) is not None and (b := layer_of(e.target)) is not None and b < a
    ]
    order = " > ".join("/".join(layer) for layer in LAYERS)
    assert not upward, f"imports that climb the layers ({order}):\n{_show(upward)}"


def test_no_import_cycle(edges: list[Edge]) -> None:
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_only_the_fake_and_the_simulate_provider_import_the_fake(edges: list[Edge]) -> None:
    allowed = ("motionflow.fakeapi", "motionflow.providers.simulate")
    bad = [
        e
        for e in edges
        if e.target.startswith("motionflow.fakeapi")
        and not any(e.source == a or e.source.startswith(a + ".") for a in allowed)
    ]
    assert not bad, f"production code importing the fake:\n{_show(bad)}"


def test_only_the_cli_imports_click_or_rich() -> None:
    bad = [
        e
        for e in imports_of_package(external=True)
        if e.target.split(".")[0] in {"click", "rich"}
        and not (e.source == "motionflow.cli" or e.source.startswith("motionflow.cli."))
    ]
    assert not bad, f"click or rich outside motionflow/cli/:\n{_show(bad)}"


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "motionflow"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from motionflow import low\n"
        "def f():\n    from ..low import thing\n    import click\n"
    )
    found = {(e.source, e.target) for e in imports_of_package(pkg, external=True)}
    assert ("motionflow.sub.mod", "motionflow.low") in found
    assert ("motionflow.sub.mod", "click") in found
    assert cycles([Edge("a", "b", "x"), Edge("b", "a", "y")]) == [["a", "b"]]
