"""The layout of ``clients/``: rooms by concern, imports that only flow top-down, small modules.

``results`` (the records every room passes around) imports no other room; media and transport never import
the analysis or the outputs; the analysis never imports the outputs; only the entry points (``cli``, ``app``,
``pipeline``, ``recorder``, ``live``, ``corpus``) import everything. Only ``clients/transport`` talks to Triton (imports
``tritonclient``), and the app reads no protocol's spelling.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

CLIENTS = ROOT / "clients"
ENTRY_POINTS = ("clients.cli", "clients.app", "clients.pipeline", "clients.recorder", "clients.live",
                "clients.corpus")
#: room -> the rooms it must not import.
FORBIDDEN = {
    "results": ("clients.media", "clients.transport", "clients.analysis", "clients.outputs", *ENTRY_POINTS),
    "media": ("clients.transport", "clients.analysis", "clients.outputs", *ENTRY_POINTS),
    "transport": ("clients.media", "clients.analysis", "clients.outputs", *ENTRY_POINTS),
    "analysis": ("clients.transport", "clients.outputs", *ENTRY_POINTS),
    "outputs": ("clients.transport", *ENTRY_POINTS),
}
MAX_LINES = 410


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_imports_flow_top_down(room: str) -> None:
    wrong = {f"{p.relative_to(ROOT)}: {name}" for p in _modules(CLIENTS / room) for name in _imports(p)
             if any(_under(name, prefix) for prefix in FORBIDDEN[room])}
    assert not wrong, sorted(wrong)


def test_only_the_transport_talks_to_triton() -> None:
    talking = {str(p.relative_to(ROOT)) for p in _modules(CLIENTS)
               if any(_under(name, "tritonclient") or _under(name, "grpc") for name in _imports(p))}
    assert talking and all(t.startswith("clients/transport/") for t in talking), sorted(talking)


def test_the_app_goes_through_scene_client_and_reads_no_protocol_spelling() -> None:
    for path in _modules(CLIENTS / "app"):
        text = path.read_text(encoding="utf-8")
        for spelling in ("modelName", "stringValue", "string_value", "ensemble_scheduling", "model_name"):
            assert spelling not in text, f"{path.relative_to(ROOT)} spells {spelling!r}"
        assert not any(_under(name, "tritonclient") for name in _imports(path))


def test_modules_stay_small() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules(CLIENTS)}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
