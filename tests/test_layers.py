"""The layers of ARCHITECTURE.md: a module imports only from its own package or from layers below,
no modules import each other in a circle (imports inside functions count: they only hide the tie),
and nothing inside the package imports the public face (`import scaleworld`), which would run back up."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scaleworld"
LAYERS = [  # bottom first; packages on one line are peers and must not import each other
    {"errors", "progress", "console", "version"},
    {"analysis", "atari"},
    {"data"},
    {"models"},
    {"objectives"},
    {"training"},
    {"evaluation", "imagination"},
    {"experts"},
    {"study"},
    {"report"},
    {"cli"},
    {"__init__"},  # the public face: names from every layer, imported on first use
]


def _layer(package: str) -> int:
    (index,) = [i for i, layer in enumerate(LAYERS) if package in layer]
    return index


def test_every_module_imports_only_from_below():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] != "scaleworld" or len(parts) < 2 or parts[1] == own:
                    continue
                if _layer(parts[1]) >= _layer(own):
                    upward.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not upward, "\n".join(upward)


def _imports() -> dict[str, set[str]]:
    """module -> the scaleworld modules it imports anywhere in its file, functions included (a
    `from pkg import name` counts as importing pkg.name when that is a module, else pkg); imports
    under `if TYPE_CHECKING:` never run and do not count."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py")}
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        targets = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                       for stmt in block.body for n in ast.walk(stmt)}  # never run: annotations only
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scaleworld"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("scaleworld")}
        # importing pkg.mod runs pkg's __init__ first: an edge to every package above the target too
        targets |= {".".join(t.split(".")[:i]) for t in set(targets) for i in range(2, t.count(".") + 1)}
        graph[me] = targets - {me} - {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 1)}
    return graph


def test_no_module_imports_the_public_face():
    bare = [f"{module} imports scaleworld" for module, targets in _imports().items()
            if module != "scaleworld" and "scaleworld" in targets]
    assert not bare, "\n".join(bare)


def test_no_import_circles_even_inside_functions():
    graph = _imports()
    circles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(" <-> ".join(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, "\n".join(circles)
