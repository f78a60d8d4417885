"""The import arrows between mmkd's rooms run one way, read from the source (no import needed).

Imports under `if TYPE_CHECKING:` are types only and do not count. A new arrow upwards (or a
new room) fails here with the file and line, so a cycle is caught when it is written.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mmkd"

# Lowest first: a room may import its own layer's and lower layers' rooms, never a higher one.
LAYERS = [
    {"errors", "files", "registry", "__init__"},
    {"config", "subsets", "models", "rundir"},
    {"datasets"},
    {"cache", "flow"},
    {"extract"},
    {"train"},
    {"eval"},
    {"demo"},
    {"cli", "__main__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _runtime_imports(path: Path):
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mmkd":
                yield from ((f"mmkd.{a.name}", node.lineno) for a in node.names)
            else:
                yield node.module, node.lineno


def _room(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _arrows():
    for path in sorted(SRC.rglob("*.py")):
        for name, line in _runtime_imports(path):
            parts = name.split(".")
            if parts[0] == "mmkd" and len(parts) > 1:
                room = parts[1] if parts[1] in RANK else "__init__"  # e.g. mmkd.__version__
                yield path, line, _room(path), room, name


def test_every_room_has_a_layer():
    rooms = {_room(p) for p in SRC.rglob("*.py")}
    assert rooms <= set(RANK), f"place {sorted(rooms - set(RANK))} in LAYERS"


def test_imports_run_downwards_only():
    upward = [f"{p.relative_to(SRC)}:{line}: {src} imports {name} (a higher layer)"
              for p, line, src, dst, name in _arrows() if RANK[dst] > RANK[src]]
    assert not upward, "\n".join(upward)


def test_rooms_of_one_layer_do_not_import_each_other_both_ways():
    pairs = {(src, dst) for _, _, src, dst, _ in _arrows() if src != dst}
    assert not {(a, b) for a, b in pairs if (b, a) in pairs}


def test_models_import_only_torch_and_the_registry():
    """The networks are reusable without mmkd's config, cache or training code."""
    other = [f"{p.relative_to(SRC)}:{line}: {name}" for p, line, src, dst, name in _arrows()
             if src == "models" and dst not in ("models", "registry")]
    assert not other, "\n".join(other)


def test_no_module_cycles_inside_a_room():
    """Module-level cycles (a package's `__init__` re-exporting its modules aside)."""
    graph: dict[str, set[str]] = {}
    modules = {".".join(p.relative_to(SRC.parent).with_suffix("").parts) for p in SRC.rglob("*.py")}
    for path in SRC.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        mod = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for name, _ in _runtime_imports(path):
            graph.setdefault(mod, set()).update(
                m for m in (name, name.rsplit(".", 1)[0]) if m in modules and m != mod)
    seen: set[str] = set()

    def visit(mod: str, stack: list[str]) -> None:
        if mod in stack:
            raise AssertionError(" -> ".join([*stack[stack.index(mod):], mod]))
        if mod in seen:
            return
        seen.add(mod)
        for nxt in sorted(graph.get(mod, ())):
            visit(nxt, [*stack, mod])

    for mod in sorted(graph):
        visit(mod, [])
