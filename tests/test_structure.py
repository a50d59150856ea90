"""The house's shape: no import cycles among the project's modules, and the library
(mrcnn) never imports the application (fashion).

Imports are read with ast, not executed: module-level and function-level ``import`` /
``from`` statements both count, resolved to the project's own modules.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mrcnn", "fashion")


def _modules():
    """{dotted module name: path} of every .py file of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name, modules):
    """The longest project module that `name` (a.b.c) is or lies inside, or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imported_names(module, path, modules):
    """Dotted names imported anywhere in a module (absolute; relative ones resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # "from mrcnn import utils" imports the module mrcnn.utils; any other
                # name comes from the module (or package __init__) `base` itself
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def import_graph():
    """{module: set of project modules it imports}."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        targets = {_resolve(n, modules) for n in _imported_names(module, path, modules)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph):
    """One import cycle as a list [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_library_never_imports_the_application():
    bad = sorted(f"{m} imports {t}" for m, ts in import_graph().items()
                 if m.split(".")[0] == "mrcnn" for t in ts if t.split(".")[0] == "fashion")
    assert not bad, "mrcnn must not import fashion: " + "; ".join(bad)


def test_the_walker_sees_function_level_imports():
    graph = import_graph()
    assert "mrcnn" in graph and "mrcnn.utils" in graph
    # mrcnn.config imports mrcnn.meta at module level; mrcnn.model imports mrcnn.weights.download
    # inside a method
    assert "mrcnn.meta" in graph["mrcnn.config"]
    assert "mrcnn.weights.download" in graph["mrcnn.model"]
