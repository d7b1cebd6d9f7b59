"""The package's shape: no module of utils imports one that imports it back, at any depth or inside functions."""
import ast
from pathlib import Path

UTILS = Path(__file__).resolve().parent.parent / "utils"


def utils_imports(path: Path) -> set[str]:
    """The utils modules that ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "utils":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("utils."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("utils.")}
    return found


def test_utils_has_no_import_cycle():
    graph = {path.stem: utils_imports(path) for path in UTILS.glob("*.py") if path.stem != "__init__"}
    assert all(target in graph for targets in graph.values() for target in targets), graph

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(t == goal or (t not in seen and reaches(t, goal, seen | {t})) for t in graph[start])

    cycles = [module for module in graph if reaches(module, module, {module})]
    assert not cycles, f"these utils modules import themselves through others: {cycles}"


def test_the_package_docstring_lists_every_module():
    doc = (UTILS / "__init__.py").read_text()
    missing = [p.stem for p in UTILS.glob("*.py") if p.stem != "__init__" and f"``{p.stem}``" not in doc]
    assert not missing, f"utils/__init__.py does not describe {missing}"
