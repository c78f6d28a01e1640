"""The import rules of docs/architecture.md, checked on the source with `ast`.

Every module under ct_assets/, bentos/ and bench/ is parsed (imports inside functions count as
much as those at module top) and its imports are resolved to absolute module names. A failing
check lists each offending module, line and import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("ct_assets", "bentos", "bench")

# lib/ layers, and the other lib layers each may import (a layer may always import itself).
# core is the base and imports no other layer; data builds on core only.
LIB_LAYERS = ("core", "data", "model", "monitor", "serving", "governance")
ALLOWED_LAYER_IMPORTS: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "model": {"core", "data"},
    "serving": {"core", "data", "model"},
    "monitor": {"core", "data", "model", "serving"},
    "governance": {"core", "data", "model", "serving"},
}

# What lib/ must never import: Dagster (and its integrations), the wiring and the application.
LIB_FORBIDDEN = (
    "dagster",
    "dagster_*",
    "ct_assets.defs",
    "ct_assets.definitions",
    "ct_assets.app",
    "ct_assets.cli",
)
BENTOS_FORBIDDEN = ("dagster", "dagster_*", "ct_assets.defs", "ct_assets.definitions")
DEFS_IMPORTERS = ("ct_assets.definitions", "ct_assets.defs")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "ct_assets.lib.model.registry"
    target: str  # the imported module or name, absolute, e.g. "ct_assets.lib.core.audit"
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_module_target(node: ast.Call) -> str | None:
    """The literal name given to `importlib.import_module("...")` or `__import__("...")`, if any."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_of(path: Path, root: Path = REPO) -> list[Import]:
    """Every import in one file, absolute; `from a import b` yields both `a` and `a.b`."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append(Import(module, target, node.lineno))
            found += [Import(module, f"{target}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and (target := _import_module_target(node)):
            found.append(Import(module, target, node.lineno))
    return found


def all_imports() -> list[Import]:
    files = sorted(p for top in SCANNED for p in (REPO / top).rglob("*.py"))
    assert files, f"no modules found under {SCANNED}"
    return [imp for path in files for imp in imports_of(path)]


def matches(target: str, pattern: str) -> bool:
    """`pattern` names a module and everything below it; `dagster_*` any top-level dagster_ package."""
    if pattern.endswith("*"):
        return target.split(".")[0].startswith(pattern[:-1])
    return target == pattern or target.startswith(pattern + ".")


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(matches(module, p) for p in prefixes)


def lib_layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 2 and parts[:2] == ["ct_assets", "lib"] and parts[2] in LIB_LAYERS:
        return parts[2]
    return None


def report(offenders: list[Import], rule: str) -> str:
    lines = sorted({str(o) for o in offenders})
    return f"{rule}: {len(lines)} offending import(s)\n  " + "\n  ".join(lines)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_every_lib_module_belongs_to_a_layer() -> None:
    strays = [
        module_name(p)
        for p in (REPO / "ct_assets" / "lib").rglob("*.py")
        if module_name(p) != "ct_assets.lib" and lib_layer(module_name(p)) is None
    ]
    assert not strays, f"lib modules outside the layers {LIB_LAYERS}: {sorted(strays)}"


@pytest.mark.parametrize("package", ["lib", "app"])
def test_every_module_has_its_own_test_module_at_the_mirrored_path(package: str) -> None:
    """`ct_assets/<package>/<layer>/<m>.py` is tested by `ct_assets_tests/<package>/<layer>/test_<m>.py`."""
    untested = [
        str(expected.relative_to(REPO))
        for source in sorted((REPO / "ct_assets" / package).rglob("*.py"))
        if source.name != "__init__.py"
        and not (
            expected := REPO
            / "ct_assets_tests"
            / source.parent.relative_to(REPO / "ct_assets")
            / f"test_{source.name}"
        ).is_file()
    ]
    assert not untested, f"modules without their test module: {untested}"


def test_lib_never_imports_dagster_nor_the_wiring_nor_the_application(imports: list[Import]) -> None:
    offenders = [i for i in imports if matches(i.module, "ct_assets.lib") and within(i.target, LIB_FORBIDDEN)]
    assert not offenders, report(offenders, f"lib/ imports one of {LIB_FORBIDDEN}")


def test_lib_layers_import_only_allowed_layers(imports: list[Import]) -> None:
    offenders = [
        i
        for i in imports
        if (source := lib_layer(i.module))
        and (target := lib_layer(i.target))
        and target != source
        and target not in ALLOWED_LAYER_IMPORTS[source]
    ]
    allowed = "; ".join(f"{k} -> {sorted(v) or 'none'}" for k, v in ALLOWED_LAYER_IMPORTS.items())
    assert not offenders, report(offenders, f"a lib layer imports a layer it may not ({allowed})")


def test_bentos_never_import_dagster_nor_the_wiring(imports: list[Import]) -> None:
    offenders = [i for i in imports if matches(i.module, "bentos") and within(i.target, BENTOS_FORBIDDEN)]
    assert not offenders, report(offenders, f"bentos/ imports one of {BENTOS_FORBIDDEN}")


def test_only_the_code_location_imports_defs(imports: list[Import]) -> None:
    offenders = [
        i for i in imports if matches(i.target, "ct_assets.defs") and not within(i.module, DEFS_IMPORTERS)
    ]
    assert not offenders, report(
        offenders, "only ct_assets.definitions and ct_assets/defs/ may import ct_assets.defs"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import dagster as dg", ["dagster"]),
        ("from ..core import spec", ["ct_assets.lib.core", "ct_assets.lib.core.spec"]),
        (
            "def f():\n    from ct_assets.defs.recovery import x",
            ["ct_assets.defs.recovery", "ct_assets.defs.recovery.x"],
        ),
        (
            "import importlib\nimportlib.import_module('ct_assets.defs.resources')",
            ["importlib", "ct_assets.defs.resources"],
        ),
    ],
)
def test_imports_are_found_and_resolved(tmp_path: Path, source: str, expected: list[str]) -> None:
    # The checks above are only as good as this reader: a module at lib/model/probe.py in a temp tree
    # must yield absolute targets, relative and function-level imports included.
    path = tmp_path / "ct_assets" / "lib" / "model" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n")
    assert [i.target for i in imports_of(path, root=tmp_path)] == expected
