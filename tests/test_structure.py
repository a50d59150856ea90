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


# ---------------------------------------------------------------------- the wings
def _room(module):
    """The room a module lives in: its wing (mrcnn.training, fashion.data, ...) or, for
    a loose module at the top of a package, the module itself."""
    parts = module.split(".")
    if len(parts) >= 2 and (REPO / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def test_no_import_runs_back_up_between_rooms():
    """Folders count as one room: if two rooms import each other (through any of their
    modules), the shared piece belongs lower. Inside mrcnn/ and fashion/ alike."""
    rooms = {}
    for module, targets in import_graph().items():
        if module in PACKAGES:
            continue  # a package's face (mrcnn/__init__.py hands on nothing it imports)
        for t in targets:
            if t not in PACKAGES and _room(t) != _room(module):
                rooms.setdefault(_room(module), set()).add(_room(t))
    cycle = find_cycle(rooms)
    assert cycle is None, "rooms importing each other: " + " -> ".join(cycle)


def _loose(package):
    return sorted(p.stem for p in (REPO / package).glob("*.py") if p.stem != "__init__")


def test_few_loose_modules_at_the_top():
    """What does not belong to a wing stays at the top: about a dozen modules each."""
    assert len(_loose("mrcnn")) <= 13, _loose("mrcnn")
    assert len(_loose("fashion")) <= 12, _loose("fashion")


def test_matterport_modules_stay_where_they_were():
    for name in ("config", "model", "utils", "visualize"):
        assert (REPO / "mrcnn" / f"{name}.py").is_file(), f"mrcnn/{name}.py moved"


def test_every_package_says_what_lives_there():
    for package in PACKAGES:
        for init in sorted((REPO / package).rglob("__init__.py")):
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
            assert doc and len(doc) > 40, f"{init.relative_to(REPO)} has no docstring"


# The same concept at two levels, each docstring saying how they differ.
SAME_CONCEPT = {"config", "tfrecords"}


def test_a_module_name_lives_in_one_of_the_library_and_the_application():
    names = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.stem != "__init__":
                names.setdefault(path.stem, set()).add(package)
    both = sorted(n for n, ps in names.items() if len(ps) == 2 and n not in SAME_CONCEPT)
    assert not both, f"module names in both mrcnn/ and fashion/: {both}"


def test_library_messages_do_not_name_the_application():
    """mrcnn's strings name library calls and Config keys, never `fashion.py` commands."""
    bad = []
    for path in sorted((REPO / "mrcnn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and "fashion.py" in node.value and not _is_docstring(node, path):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, bad


def _is_docstring(node, path, _cache={}):
    if path not in _cache:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        _cache[path] = {(n.body[0].value.lineno) for n in ast.walk(tree)
                        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                        and n.body and isinstance(n.body[0], ast.Expr)
                        and isinstance(n.body[0].value, ast.Constant)}
    return node.lineno in _cache[path]


def test_commands_leave_their_parsed_flags_as_they_are():
    """A command gets a Run and asks it; it never writes into argparse's namespace to
    carry values on (`args.x = ...`)."""
    bad = []
    for path in sorted((REPO / "fashion").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) \
                        and t.value.id == "args":
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} args.{t.attr}")
    assert not bad, bad


def test_old_module_names_still_import_with_a_warning():
    """Moved modules keep their old names for one release (docs/changes.md)."""
    import importlib
    import warnings

    import fashion
    import mrcnn
    for old, new in {**mrcnn.MOVED, **fashion.MOVED}.items():
        assert importlib.util.find_spec(new) is not None, f"{old} -> {new}: no such module"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("fashion.rle")
    assert module.__name__ == "fashion.data.rle"
    assert any("fashion.data.rle" in str(w.message) for w in caught)
