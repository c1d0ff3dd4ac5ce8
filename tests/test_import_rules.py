"""The layering rules of STYLE.md, checked on the code itself.

- The web process never loads TensorFlow: setting Django up, importing the URLs and the ASGI
  application, and listing pipelines with their schemas and dataset kinds leave it unimported.
- `worker/pipelines/` never imports Django or `apps` (pipelines are plain Python + ML libraries).
- Nothing under `apps/` imports TensorFlow or Keras at module level.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TENSORFLOW_ROOTS = {"tensorflow", "keras", "tf_keras"}
# What pipelines use to train and predict; the web process lists pipelines and resolves params only.
HEAVY_ROOTS = TENSORFLOW_ROOTS | {
    "gymnasium", "Box2D", "pygame", "implicit", "xgboost", "matplotlib", "sklearn", "skimage", "scipy", "cv2",
    "imageio_ffmpeg", "pandas",
}  # fmt: skip

WEB_PROCESS = """
import json, sys
import django
django.setup()
import dlsite.urls, dlsite.asgi
from worker.pipelines.base import all_pipelines
pipelines = all_pipelines()
listing = {p.name: {"schema": p.params_schema(), "kinds": [k.name for k in p.dataset_kinds]} for p in pipelines}
defaults = {p.name: p.resolve_params({}).model_dump(mode="json") for p in pipelines}  # as run_submit does
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[1].split(",")))
print(json.dumps({"pipelines": sorted(listing), "kinds": listing, "loaded": loaded}))
"""


def test_web_process_imports_no_machine_learning_library():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="dlsite.settings")
    completed = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS, ",".join(sorted(HEAVY_ROOTS))], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["pipelines"] == ["chatbot", "lunar_lander", "recommender", "stock_forecast", "traffic_signs"]
    assert result["kinds"]["traffic_signs"]["kinds"] == ["gtsrb"]
    assert result["kinds"]["traffic_signs"]["schema"]["properties"]["epochs"]["default"] == 10
    assert result["loaded"] == [], "the web process imported " + ", ".join(result["loaded"][:10])


def python_files(folder: str) -> list[Path]:
    files = sorted((REPO_ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(node: ast.AST, path: Path) -> Iterator[str]:
    """Absolute names a statement imports (relative ones resolved), and constant names of
    `importlib.import_module(...)` / `__import__(...)` calls."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module_name(path).split(".")
            if path.name != "__init__.py":
                package.pop()
            base = package[: len(package) - (node.level - 1)]
            yield ".".join([*base, node.module] if node.module else base)
        else:
            yield node.module or ""
    elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            yield node.args[0].value


def root(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", python_files("worker/pipelines"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pipelines_import_neither_django_nor_apps(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    offending = [
        f"line {node.lineno}: {module}"
        for node in ast.walk(tree)  # every level: module, functions, methods, conditionals
        for module in imported_modules(node, path)
        if root(module) in ("django", "apps")
    ]
    assert not offending, f"{path.relative_to(REPO_ROOT)} imports Django or apps: {offending}"


def module_level_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Everything that runs on import: module body, conditionals, try blocks, class bodies; not the
    bodies of functions and lambdas."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


@pytest.mark.parametrize("path", python_files("apps"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_apps_do_not_import_tensorflow_at_module_level(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    offending = [
        f"line {node.lineno}: {module}"
        for node in module_level_nodes(tree)
        for module in imported_modules(node, path)
        if root(module) in TENSORFLOW_ROOTS
    ]
    assert not offending, f"{path.relative_to(REPO_ROOT)} imports TensorFlow at module level: {offending}"


def test_rule_checkers_catch_violations(tmp_path):
    """The walkers see imports hidden in functions, relative imports and import_module calls."""
    source = """
import os
def train():
    from django.db import models
    import importlib
    importlib.import_module("apps.experiments")
class Thing:
    import keras
if True:
    from tensorflow import keras as k
def later():
    import tensorflow
"""
    path = REPO_ROOT / "worker" / "pipelines" / "example" / "pipeline.py"
    tree = ast.parse(source)
    found = [module for node in ast.walk(tree) for module in imported_modules(node, path)]
    assert {"django.db", "apps.experiments", "keras", "tensorflow"} <= set(found)
    module_level = [module for node in module_level_nodes(tree) for module in imported_modules(node, path)]
    assert "keras" in module_level and "tensorflow" in module_level  # `tensorflow` from line 10
    assert module_level.count("tensorflow") == 1  # not the one inside later()
    relative = ast.parse("from ..base import Params\nfrom . import data")
    assert [m for node in ast.walk(relative) for m in imported_modules(node, path)] == [
        "worker.pipelines.base", "worker.pipelines.example",
    ]
