"""The house's shape, checked: no import circle inside clipcam, no module over 450 lines, and
gradio imported only by the app's layout modules. Read from the source with ``ast``, so a
circle hidden in a function-level import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "clipcam"
MAX_LINES = 450
#: The only modules that may import gradio: the layout, its event handlers and the component subclasses.
GRADIO_MODULES = {"clipcam.app.layout", "clipcam.app.handlers", "clipcam.app.components", "clipcam.app.label_view",
                  "clipcam.app.heads_layout"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The clipcam modules that module ``name`` imports, anywhere in it (resolved to modules that exist)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_circle() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    # a module's own package __init__ is not an edge that closes a circle (Python loads it first)
    for name, deps in graph.items():
        deps.difference_update({p for p in deps if name.startswith(p + ".")})
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == [], "import circles: " + "; ".join(" → ".join(c) for c in circles)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; the house keeps modules at {MAX_LINES} or fewer"


def test_gradio_only_in_the_layout() -> None:
    users = sorted(name for name in MODULES if any(dep == "gradio" or dep.startswith("gradio.") for dep in
                                                   _external_imports(name)))
    assert set(users) <= GRADIO_MODULES, f"gradio imported outside the layout: {sorted(set(users) - GRADIO_MODULES)}"


def _external_imports(name: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


#: The house's floors, lowest first: a module imports only from its own floor or those below it, so
#: that following a name from the app down never climbs back up.
FLOORS = (
    ("constants", "cache", "memory", "geometry", "images", "precision", "prompts", "render", "render_labels"),
    ("models",),
    ("hooks", "targets"),
    ("methods",),
    ("passes", "words", "decompose"),
    ("results",),
    ("notes", "record", "dense"),
    ("explainer", "slide"),
    ("eval", "app", "cli", "__main__", "testing", ""),
)


def floor_of(name: str) -> int:
    part = name.split(".")[1] if "." in name else ""
    return next(i for i, floor in enumerate(FLOORS) if part in floor)


def test_no_import_runs_back_up() -> None:
    upward = sorted(f"{name} → {dep}" for name in MODULES for dep in imports_of(name)
                    if floor_of(dep) > floor_of(name))
    assert upward == [], "imports that climb a floor: " + "; ".join(upward)
