"""The layers of ARCHITECTURE.md: a module imports only from its own package or from layers below."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scaleworld"
LAYERS = [  # bottom first; packages on one line are peers and must not import each other
    {"errors", "progress", "__init__"},
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
