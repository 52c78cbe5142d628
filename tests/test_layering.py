"""Imports point one way, so no import circle can come back.

The package is read from the parsed source of every module, function-level imports included: a
module may import from its own layer of :data:`LAYERS` and the layers before it, never from a
later one, and the imports within a layer form no circle. Data flows through a call as
data -> models -> the engine -> ops -> backends, and training and evaluation sit on top of those;
imports point from the entry points (CLI on top) down to the kernels.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

import linkexit_fast

ROOT = Path(linkexit_fast.__file__).resolve().parent
KERNELS = ROOT.parent / "kernels"  # installed as linkexit_fast.kernels (setup.py)

# Lowest first: each entry names top-level modules or subpackages of linkexit_fast ("" is the
# package's own __init__).
LAYERS = [
    ("validation", "timing", "metrics", "pairs_io", "version"),  # foundations
    ("graph",),  # the Graph and its CSR
    ("backends", "kernels"),  # the ops' implementations: torch, C++, Triton
    ("datasets", "heart"),  # data sets and HeaRT negatives
    ("models",),  # backbones, exit heads, predictor; the dense reference forward
    ("checkpoint",),  # saved models
    ("ops", "engine"),  # inference: the public ops, the engine
    ("evaluate", "train", "train_args", "ranking", "report", "pareto", "distributed", "partitioned"),  # training, evaluation, scale-out
    ("demo", "cli", ""),  # front ends and the package's public names
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_files() -> Dict[str, Path]:
    """``{dotted name: file}`` of every Python module of the package."""
    files = {}
    for base, prefix in ((ROOT, "linkexit_fast"), (KERNELS, "linkexit_fast.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([prefix, *parts])] = path
    return files


def imports_of(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # "from ." names the module's package: itself for an __init__, else its parent
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # "from x import y" imports x.y when y is a module, else x
            subs = [f"{source}.{a.name}" for a in node.names]
            targets = [t if t in modules else source for t in subs] + ([source] if node.module else [])
        else:
            continue
        found.update(t for t in targets if t in modules)
    return found - {name}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    assert top in LAYER, f"{module} is in no layer: place it in tests/test_layering.py's LAYERS"
    return LAYER[top]


def import_graph() -> Dict[str, Set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_every_module_is_placed():
    for module in import_graph():
        layer_of(module)


def test_imports_point_down():
    wrong = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
             for m, targets in sorted(import_graph().items()) for t in sorted(targets)
             if layer_of(t) > layer_of(m)]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_circles():
    graph = import_graph()
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The parser resolves relative imports from modules and packages, and reads imports inside
    functions: the circles this test guards against were all function-level imports."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from .checkpoint import save\n    from . import engine, __version__\n")
    modules = {"linkexit_fast", "linkexit_fast.checkpoint", "linkexit_fast.engine"}
    assert imports_of("linkexit_fast.models", src, modules) == modules
    init = tmp_path / "__init__.py"
    init.write_text("from .run import x\nfrom ..graph import Graph\n")
    modules = {"linkexit_fast.engine.run", "linkexit_fast.graph"}
    assert imports_of("linkexit_fast.engine", init, modules) == modules
