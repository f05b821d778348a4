"""Dependencies point one way: features, models <- training <- pipelines; serving <- models,
features. Walk every import with ast so the rule cannot rot."""

import ast

import pytest

from tests.conftest import REPO

ALLOWED = {
    "features": {"features"},
    "models": {"models"},
    "training": {"training", "features", "models"},
    "pipelines": {"pipelines", "training", "features", "models", "serving"},
    "serving": {"serving", "features", "models"},
}
HEAVY_AT_IMPORT = {"feast", "mlflow", "implicit"}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    bad = []
    for path in (REPO / package).rglob("*.py"):
        for _, top in _imports(path):
            if top in ALLOWED and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(REPO)} imports {top}")
    assert not bad, bad


@pytest.mark.parametrize("package", ["features", "serving", "models"])
def test_heavy_libraries_are_not_imported_at_module_level(package):
    bad = []
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; imports inside functions are fine
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            bad += [f"{path.relative_to(REPO)}: {n}" for n in names if n in HEAVY_AT_IMPORT]
    assert not bad, bad
