"""The import rules of DESIGN §1, checked by reading the source (no imports executed):
- prism_api imports only pydantic and the standard library;
- prism_operator never imports ray, torch, qdrant_client or other heavy ML packages;
- prism_pipeline never imports kopf or kubernetes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "worker_image" / "prism_pipeline" / "spec"
PIPELINE = ROOT / "worker_image" / "prism_pipeline"
OPERATOR = ROOT / "operator" / "prism_operator"

HEAVY = {"ray", "torch", "qdrant_client", "transformers", "sentence_transformers", "cv2", "av", "numpy"}
K8S = {"kopf", "kubernetes", "kubernetes_asyncio", "prism_operator"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a file imports, at any depth (lazy imports count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.add(node.args[0].value.split(".")[0])
    return found


def violations(folder: Path, allowed=None, forbidden=frozenset(), skip=()) -> list[str]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        if any(part in skip for part in path.relative_to(folder).parts):
            continue
        for module in imported_modules(path):
            if module in forbidden or (allowed is not None and module not in allowed):
                out.append(f"{path.relative_to(folder.parent)} imports {module}")
    return out


def test_spec_imports_only_pydantic_and_stdlib():
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "__future__"}
    assert violations(SPEC, allowed=allowed) == []


def test_operator_imports_nothing_heavy():
    assert OPERATOR.is_dir()
    assert violations(OPERATOR, forbidden=HEAVY) == []


def test_pipeline_never_imports_kubernetes():
    assert violations(PIPELINE, forbidden=K8S) == []


@pytest.mark.parametrize(("folder_rule", "source"), [
    ("spec", "import yaml\n"),
    ("spec", "def f():\n    from prism_pipeline import pipeline\n"),
    ("operator", "def f():\n    import ray\n"),
    ("operator", "import importlib\nimportlib.import_module('torch.nn')\n"),
    ("pipeline", "from kubernetes import client\n"),
    ("pipeline", "import kopf\n"),
])
def test_the_check_catches_a_forbidden_import(tmp_path, folder_rule, source):
    (tmp_path / "bad.py").write_text(source)
    if folder_rule == "spec":
        allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "__future__"}
        found = violations(tmp_path, allowed=allowed)
    else:
        found = violations(tmp_path, forbidden=HEAVY if folder_rule == "operator" else K8S)
    assert len(found) == 1, found
