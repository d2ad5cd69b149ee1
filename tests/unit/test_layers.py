"""The layering contract and the module-size limit, read from the source (issue 27).

Layers, lowest first: ``core`` (pure), ``queues`` and ``worker`` (run in Pods: no Airflow), the
Airflow-facing basics (``_compat``, ``config``, ``exceptions``, ``extras``), ``hooks`` (every
Kubernetes and broker call), ``triggers``, ``operators`` and ``sensors``, ``decorators``. A module
imports its own layer and the layers its row allows, never one above. Imports inside functions
count: a lazy import is a dependency too.

What is still known to cross a line is listed with its reason; a listed crossing that is gone
fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_batchjob"
BASICS = {"_compat", "config", "exceptions", "extras", "links"}

# Which subpackages (or top-level modules) of airflow_batchjob each one may import, besides itself.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "queues": {"core"},
    "worker": {"core", "queues", "extras"},
    "_compat": set(),
    "config": set(),
    "exceptions": {"_compat"},
    "extras": {"_compat"},
    "hooks": {"core", "queues"} | BASICS,
    "triggers": {"core", "hooks"} | BASICS,
    "operators": {"core", "queues", "hooks", "triggers"} | BASICS,
    "sensors": {"core", "hooks", "triggers"} | BASICS,
    "decorators": {"core", "worker", "hooks", "triggers", "operators"} | BASICS,
    "links": {"config", "core"},
    # The api-server plugin (the Batch view): reads Kubernetes through hooks/ only.
    "plugins": {"core", "hooks"} | BASICS,
    "__init__": {"config", "core"},
}
# Third-party roots a layer must not import at all.
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {
    "core": {"airflow", "kubernetes_asyncio"},
    "queues": {"airflow", "kubernetes", "kubernetes_asyncio"},
    "worker": {"airflow", "kubernetes", "kubernetes_asyncio"},
    # The Kubernetes API is called through hooks/ only.
    "triggers": {"kubernetes", "kubernetes_asyncio"},
    "operators": {"kubernetes_asyncio"},
    "sensors": {"kubernetes", "kubernetes_asyncio"},
    "decorators": {"kubernetes", "kubernetes_asyncio"},
    "plugins": {"kubernetes", "kubernetes_asyncio"},
}
KNOWN: dict[tuple[str, str], str] = {
    ("core.batchmap", "worker"): (
        "ships worker/batch_map_boot.py's source and reads its exit codes: the boot script runs "
        "alone in the image's Python, so it cannot import core"
    ),
}
MAX_LINES = 450
# Modules past the limit, each at most its size today (issue 27 splits them): it may only shrink.
OVERSIZE = {
    "localcluster/nodeagent.py": 988,
}


def _modules() -> list[tuple[str, Path]]:
    """(dotted name under the package, path) of every module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _imports(path: Path) -> set[str]:
    """Every absolute module name the file imports, at any depth (``from a import b`` gives a.b too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def crossings() -> set[tuple[str, str]]:
    """(module, what it should not import): a layer of the package, or a third-party root."""
    found = set()
    for module, path in _modules():
        layer = module.split(".")[0]
        allowed = ALLOWED[layer] | {layer}
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "airflow_batchjob" and len(parts) > 1 and parts[1] not in allowed:
                found.add((module, parts[1]))
            elif parts[0] in FORBIDDEN_EXTERNAL.get(layer, set()):
                found.add((module, parts[0]))
    return found


def test_every_layer_is_in_the_contract() -> None:
    layers = {m.split(".")[0] for m, _ in _modules()}
    assert layers <= set(ALLOWED), f"add these to ALLOWED, with what they may import: {layers - set(ALLOWED)}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    found = crossings()
    new = sorted(found - set(KNOWN))
    assert not new, f"imports that cross the layers (module, what it imports): {new}"
    gone = sorted(set(KNOWN) - found)
    assert not gone, f"no longer crossing: remove from KNOWN: {gone}"


def test_the_contract_catches_a_crossing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A core module importing an operator, and a worker module importing Airflow, are both caught."""
    fake = tmp_path / "airflow_batchjob"
    for sub in ("core", "worker"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "core" / "bad.py").write_text("def f():\n    from airflow_batchjob.operators.job import X\n")
    (fake / "worker" / "bad.py").write_text("import airflow.sdk\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert crossings() == {("core.bad", "operators"), ("worker.bad", "airflow")}


def _sizes() -> dict[str, int]:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "localcluster").rglob("*.py")]
    return {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}


def test_no_module_grows_past_the_limit() -> None:
    sizes = _sizes()
    over = {f: n for f, n in sizes.items() if n > OVERSIZE.get(f, MAX_LINES)}
    assert not over, f"modules past {MAX_LINES} lines (or past their listed size): split them: {over}"
    back = sorted(f for f in OVERSIZE if sizes.get(f, 0) <= MAX_LINES)
    assert not back, f"within {MAX_LINES} lines now: remove from OVERSIZE: {back}"
