"""The packages' layers, read from the source with ``ast``: ``orchestrace`` (the public API)
→ ``runtime`` → ``telemetry``, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Which packages each package may import from (besides itself and third parties).
ALLOWED = {
    "telemetry": set(),
    "runtime": {"telemetry"},
    "orchestrace": {"runtime", "telemetry"},
}


def imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import in ``package``'s modules."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path.name, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path.name, node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    others = set(ALLOWED) - {package}
    wrong = [
        f"{package}/{file}:{line} imports {module}"
        for file, line, module in imports(package)
        if module.split(".")[0] in others - ALLOWED[package]
    ]
    assert wrong == []


def test_the_readers_find_imports_at_all() -> None:
    """The check above is not vacuous: runtime does import telemetry, and the public
    package imports the runtime."""
    assert any(m.startswith("telemetry.") for _, _, m in imports("runtime"))
    assert any(m.startswith("runtime.") for _, _, m in imports("orchestrace"))


def test_no_private_name_is_imported_across_modules() -> None:
    """A module's ``_name`` is its own: another module that needs it needs a public name."""
    private = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ImportFrom)
                    and node.module
                    and node.module.split(".")[0] in ALLOWED
                ):
                    private += [
                        f"{package}/{path.name}:{node.lineno} imports {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert private == []
