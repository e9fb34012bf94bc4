"""The modules of ``src/llmgate`` import only downward, and their import graph has no cycle.

``LAYERS`` lists the layers bottom-up (the reasons are in docs/architecture.md).  A module may
import modules of its own layer or of lower ones.  Every import counts: module-level ones, lazy
ones inside functions, and ``if TYPE_CHECKING:`` ones (a type named in a signature is a
dependency of the design even when Python never executes the import; that is how today's
circles hide).  Importing ``a.b.c`` also runs ``a/b/__init__.py``, so a module placed below its
package's ``__init__`` points up too (a "package" import).  Package imports are left out of the
cycle check only: an ``__init__`` that re-exports its children is not a circle.

``ALLOWED`` lists the imports that break these rules today, each with why and who removes it.
It only shrinks: an entry that no longer matches an import that breaks a rule fails the test.
Moving a module means updating its line in ``LAYERS`` and deleting the entries that no longer
apply.

The checker is an AST walk (no import-linter): layers here are placed per module, including
modules that still live in the package of another layer, which import-linter's layer contracts
cannot express, and the allow-list is keyed by edge with a reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "llmgate"

# Bottom-up.  A name covers the module and its submodules (the root package only itself); the
# longest name that covers a module decides its layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        ("llmgate", "llmgate.errors", "llmgate.schemas", "llmgate.credentials", "llmgate.tasks"),
    ),
    ("http", ("llmgate.http", "llmgate.routing")),
    # What every plugin config builds on (``plugin_api/config.py``; ai's provider configs too).
    # The package line places ``plugin_api/__init__.py`` here, below its children; the plugin
    # API proper is listed module by module in "plugin-api".
    ("plugin-config", ("llmgate.plugin_api",)),
    (
        "upstream",
        (
            "llmgate.proxy.client",
            "llmgate.proxy.client_connection",
            "llmgate.proxy.client_response",
            "llmgate.proxy.upstream",
            "llmgate.proxy.balancer",
            "llmgate.proxy.health",
            "llmgate.proxy.probe",
        ),
    ),
    # The request context: it names the upstream pool and response (``ctx.upstream``), so it
    # sits above the upstream client and below everything that reads a request.
    ("request", ("llmgate.http.context",)),
    ("ai", ("llmgate.ai",)),
    (
        "plugin-api",
        (
            "llmgate.plugin_api.plugin",
            "llmgate.plugin_api.auth_consumer",
            "llmgate.plugin_api.limiting",
            "llmgate.plugin_api.access_logger",
            "llmgate.runtime.services",
            "llmgate.runtime.counters",
            "llmgate.runtime.conn_leases",
            "llmgate.runtime.redis_counters",
            "llmgate.runtime.redis_scripts",
            "llmgate.runtime.counter_server",
            "llmgate.runtime.verified",
            # The snapshot's data types (what plugins read of it): pure data, importing nothing
            # above this layer.  The runtime compiles them.
            "llmgate.runtime.snapshot",
            "llmgate.observability",
            "llmgate.store",
        ),
    ),
    ("plugins", ("llmgate.plugins",)),
    ("runtime", ("llmgate.runtime",)),
    ("proxy", ("llmgate.proxy",)),
    (
        "entry",
        (
            "llmgate.admin",
            "llmgate.app",
            "llmgate.cli",
            "llmgate.config",
            "llmgate.dataplane",
            "llmgate.fake_upstream",
            "llmgate.observability.exporter",
            "llmgate.observability.health",
            "llmgate.server",
            "llmgate.settings",
            "llmgate.setting_values",
            "llmgate.testing",
            "llmgate.workers",
        ),
    ),
)

# Imports no layer order can express: (importers, imported, why).  Names cover submodules.
FORBIDDEN: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        (
            "llmgate.http",
            "llmgate.routing",
            "llmgate.proxy",
            "llmgate.ai",
            "llmgate.plugin_api",
            "llmgate.plugins",
        ),
        "llmgate.store",
        "the request path does no database I/O: the runtime compiles rows into a snapshot",
    ),
)

# (importer, imported): why it is there and who removes it.  Only ever delete lines here.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    kind: str  # "import" (module level), "lazy", "typing" (if TYPE_CHECKING) or "package"

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} -> {self.imported} ({self.kind})"


def find_modules(src: Path, root: str) -> dict[str, Path]:
    """Dotted name -> file, for every module and package ``__init__`` under ``src/root``."""
    found: dict[str, Path] = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module that ``import name`` loads last: ``name`` or its longest existing prefix."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Dotted names an import statement asks for (``from pkg import x`` asks for ``pkg.x``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parent = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parent, *([base] if base else [])])
    return [f"{base}.{alias.name}" for alias in node.names]


def _imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    if path.name != "__init__.py" and package in modules:
        found.append(Import(name, package, 1, "package"))

    def visit(nodes: Iterable[ast.AST], kind: str) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, package):
                    owner = _owner(target, modules)
                    if owner is not None and owner != name:
                        found.append(Import(name, owner, node.lineno, kind))
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, "typing" if kind == "import" else kind)
                visit(node.orelse, kind)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(ast.iter_child_nodes(node), "lazy")
            else:
                visit(ast.iter_child_nodes(node), kind)

    visit(ast.parse(path.read_text(), str(path)).body, "import")
    return found


def find_imports(src: Path, root: str) -> list[Import]:
    """Every import between modules under ``src/root``, with where and how it happens."""
    modules = find_modules(src, root)
    return [i for name, path in modules.items() for i in _imports_of(name, path, modules)]


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...]) -> int | None:
    best: tuple[int, int] | None = None  # (length of the covering name, layer index)
    for index, (_, names) in enumerate(layers):
        for covering in names:
            covers = module == covering or ("." in covering and module.startswith(covering + "."))
            if covers and (best is None or len(covering) > best[0]):
                best = (len(covering), index)
    return None if best is None else best[1]


def _covers(names: Iterable[str], module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def shortest_cycle(component: list[str], edges: set[tuple[str, str]]) -> list[str]:
    """One shortest import chain that leaves a module of ``component`` and comes back to it."""
    inside = set(component)
    best: list[str] = []
    for start in component:
        paths = {start: [start]}
        todo = [start]
        while todo and not (best and len(paths[todo[0]]) + 1 >= len(best)):
            node = todo.pop(0)
            for a, b in sorted(edges):
                if a != node or b not in inside:
                    continue
                if b == start:
                    if not best or len(paths[node]) + 1 < len(best):
                        best = [*paths[node], start]
                    todo.clear()
                    break
                if b not in paths:
                    paths[b] = [*paths[node], b]
                    todo.append(b)
    return best


def _reaches(edges: set[tuple[str, str]], source: str, target: str) -> bool:
    seen, todo = {source}, [source]
    while todo:
        node = todo.pop()
        for a, b in edges:
            if a == node and b not in seen:
                if b == target:
                    return True
                seen.add(b)
                todo.append(b)
    return False


@dataclass
class Findings:
    unplaced: list[str]
    stale_placements: list[str]
    upward: list[Import]
    forbidden: list[str]
    cycles: list[list[str]]
    stale_allowed: list[str]


def check(
    src: Path,
    root: str,
    layers: tuple[tuple[str, tuple[str, ...]], ...],
    allowed: dict[tuple[str, str], str],
    forbidden: tuple[tuple[tuple[str, ...], str, str], ...] = (),
) -> Findings:
    modules = find_modules(src, root)
    imports = find_imports(src, root)
    placed = {name for _, names in layers for name in names}
    edges = {(i.importer, i.imported) for i in imports}
    code_edges = {(i.importer, i.imported) for i in imports if i.kind != "package"}

    def up(i: Import) -> bool:
        return (layer_of(i.imported, layers) or 0) > (layer_of(i.importer, layers) or 0)

    upward_edges = {(i.importer, i.imported) for i in imports if up(i)}
    stale_allowed = []
    for edge, why in allowed.items():
        if edge not in edges:
            stale_allowed.append(f"{edge}: no such import any more ({why})")
        elif edge not in upward_edges and not (
            edge in code_edges and _reaches(code_edges, edge[1], edge[0])
        ):
            stale_allowed.append(f"{edge}: neither upward nor in a cycle any more ({why})")
    return Findings(
        unplaced=sorted(m for m in modules if layer_of(m, layers) is None),
        stale_placements=sorted(n for n in placed if not any(_covers([n], m) for m in modules)),
        upward=[i for i in imports if up(i) and (i.importer, i.imported) not in allowed],
        forbidden=[
            f"{i}: {why}"
            for i in imports
            for importers, target, why in forbidden
            if _covers(importers, i.importer) and _covers([target], i.imported)
        ],
        cycles=cycles(code_edges - set(allowed)),
        stale_allowed=stale_allowed,
    )


@pytest.fixture(scope="module")
def findings() -> Findings:
    return check(SRC, ROOT, LAYERS, ALLOWED, FORBIDDEN)


def _names() -> dict[int, str]:
    return {index: name for index, (name, _) in enumerate(LAYERS)}


def test_every_module_has_a_layer(findings: Findings) -> None:
    assert not findings.unplaced, "place these modules in LAYERS (tests/test_layers.py)"


def test_every_placement_names_a_module(findings: Findings) -> None:
    assert not findings.stale_placements, "these LAYERS names match no module: update LAYERS"


def test_imports_point_down_or_sideways(findings: Findings) -> None:
    names = _names()
    problems = [
        f"{i}: layer {names[layer_of(i.importer, LAYERS) or 0]} imports layer "
        f"{names[layer_of(i.imported, LAYERS) or 0]}"
        for i in findings.upward
    ]
    assert not problems, (
        "imports pointing up the layers (docs/architecture.md): move the shared piece down "
        "instead\n" + "\n".join(problems)
    )


def test_no_forbidden_import(findings: Findings) -> None:
    assert not findings.forbidden, "\n".join(findings.forbidden)


def test_import_graph_has_no_cycle(findings: Findings) -> None:
    edges = {(i.importer, i.imported) for i in find_imports(SRC, ROOT) if i.kind != "package"}
    problems = [
        f"{len(component)} modules in a circle, e.g. "
        + " -> ".join(shortest_cycle(component, edges - set(ALLOWED)))
        + "\n  all: "
        + ", ".join(component)
        for component in findings.cycles
    ]
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_allowed_list_has_no_stale_entry(findings: Findings) -> None:
    assert not findings.stale_allowed, (
        "delete these entries from ALLOWED in tests/test_layers.py (the list only shrinks):\n"
        + "\n".join(findings.stale_allowed)
    )


# --- the checker itself, on a package written for the test ---------------------------------------

TOY_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("low", ("toy", "toy.low", "toy.high.shared")),
    ("high", ("toy.high",)),
)


def _toy(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"toy/__init__.py": "", "toy/low.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("low_py", "kind"),
    [
        pytest.param("import toy.high.top\n", "import", id="import"),
        pytest.param("from toy.high import top\n", "import", id="from-package-import-module"),
        pytest.param("from .high.top import X\n", "import", id="relative"),
        pytest.param("def f():\n    from toy.high.top import X\n", "lazy", id="lazy"),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.high.top import X\n",
            "typing",
            id="type-checking",
        ),
        pytest.param(
            "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    import toy.high.top\n",
            "import",
            id="type-checking-else",
        ),
        pytest.param(
            "class C:\n    async def f(self):\n        import toy.high.top\n", "lazy", id="method"
        ),
    ],
)
def test_checker_finds_an_upward_import_of_every_kind(
    tmp_path: Path, low_py: str, kind: str
) -> None:
    src = _toy(tmp_path, {"toy/low.py": low_py, "toy/high/__init__.py": "", "toy/high/top.py": ""})
    found = check(src, "toy", TOY_LAYERS, {})
    assert [(i.importer, i.imported, i.kind) for i in found.upward] == [
        ("toy.low", "toy.high.top", kind)
    ]


def test_checker_accepts_downward_and_sideways_imports(tmp_path: Path) -> None:
    files = {
        "toy/high/__init__.py": "",
        "toy/high/top.py": "from toy import low\nfrom toy.high import other\n",
        "toy/high/other.py": "import toy.low\n",
    }
    found = check(_toy(tmp_path, files), "toy", TOY_LAYERS, {})
    assert (found.upward, found.cycles, found.unplaced) == ([], [], [])


def test_checker_finds_a_module_below_its_package_init(tmp_path: Path) -> None:
    files = {"toy/high/__init__.py": "from toy.high.shared import X\n", "toy/high/shared.py": ""}
    found = check(_toy(tmp_path, files), "toy", TOY_LAYERS, {})
    assert [str(i) for i in found.upward] == ["toy.high.shared:1 -> toy.high (package)"]
    assert found.cycles == []  # an __init__ importing its children is no cycle


def test_checker_finds_cycles_and_allowed_edges_break_them(tmp_path: Path) -> None:
    files = {
        "toy/low.py": "from toy import mid\n",
        "toy/mid.py": "def f():\n    from toy import low\n",
        "toy/high/__init__.py": "",
        "toy/high/a.py": "from toy.high import b\n",
        "toy/high/b.py": "from toy.high import c\n",
        "toy/high/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import toy.high.a\n",
    }
    layers = (("low", ("toy",)), *TOY_LAYERS[1:])
    src = _toy(tmp_path, files)
    found = check(src, "toy", layers, {})
    assert found.cycles == [["toy.high.a", "toy.high.b", "toy.high.c"], ["toy.low", "toy.mid"]]
    edges = {
        ("toy.high.a", "toy.high.b"),
        ("toy.high.b", "toy.high.c"),
        ("toy.high.c", "toy.high.a"),
    }
    assert shortest_cycle(found.cycles[0], edges) == [
        "toy.high.a",
        "toy.high.b",
        "toy.high.c",
        "toy.high.a",
    ]
    allowed = {("toy.mid", "toy.low"): "why", ("toy.high.c", "toy.high.a"): "why"}
    assert check(src, "toy", layers, allowed).cycles == []
    assert check(src, "toy", layers, allowed).stale_allowed == []


def test_checker_reports_stale_allowed_entries_and_placements(tmp_path: Path) -> None:
    files = {
        "toy/low.py": "import toy.high.top\n",
        "toy/high/__init__.py": "import toy.low\n",
        "toy/high/top.py": "",
    }
    layers = (*TOY_LAYERS, ("gone", ("toy.gone",)))
    allowed = {
        ("toy.low", "toy.high.top"): "still needed: upward",
        ("toy.high", "toy.low"): "sideways and not in a cycle: stale",
        ("toy.low", "toy.vanished"): "no such import: stale",
    }
    found = check(_toy(tmp_path, files), "toy", layers, allowed)
    assert [entry.split(":")[0] for entry in found.stale_allowed] == [
        "('toy.high', 'toy.low')",
        "('toy.low', 'toy.vanished')",
    ]
    assert found.stale_placements == ["toy.gone", "toy.high.shared"]
    assert found.upward == []


def test_checker_reports_forbidden_imports_and_unplaced_modules(tmp_path: Path) -> None:
    files = {"toy/high/__init__.py": "", "toy/high/top.py": "import toy.low\n", "toy/x/y.py": ""}
    rules = ((("toy.high",), "toy.low", "no"),)
    found = check(_toy(tmp_path, files), "toy", (("low", ("toy.low",)), *TOY_LAYERS[1:]), {}, rules)
    assert found.forbidden == ["toy.high.top:1 -> toy.low (import): no"]
    assert found.unplaced == ["toy", "toy.x.y"]
