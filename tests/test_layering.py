"""The layering (docs/design.md §1): the import-linter contracts in pyproject.toml (`make lint` runs them), that
they catch a violation, plus what import-linter cannot say:
- prism_api imports only pydantic, croniter and the standard library (an allow-list, read from the source);
- importing the CLI loads neither side until a subcommand runs.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "api" / "prism_api"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


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


def outside_allow_list(folder: Path) -> list[str]:
    # croniter: an ExtractionCronJob's schedule is part of the contract (CronJob syntax, read alike by
    # the CLI's validate and the operator); it is small and pure Python.
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "__future__", "croniter"}
    return [f"{path.relative_to(folder.parent)} imports {module}"
            for path in sorted(folder.rglob("*.py")) for module in sorted(imported_modules(path) - allowed)]


def test_prism_api_imports_only_pydantic_and_the_standard_library():
    assert API.is_dir() and len(list(API.glob("*.py"))) > 5
    assert outside_allow_list(API) == []


@pytest.mark.parametrize("source", ["import yaml\n", "def f():\n    from prism_pipeline import pipeline\n",
                                    "import importlib\nimportlib.import_module('torch.nn')\n"])
def test_the_allow_list_catches_a_forbidden_import(tmp_path, source):
    (tmp_path / "bad.py").write_text(source)
    assert len(outside_allow_list(tmp_path)) == 1


def lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_the_import_contracts_hold():
    assert LINT_IMPORTS.exists(), "import-linter is a dev dependency (`make setup`)"
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


# One violation per contract, planted in a copy of the four packages.
VIOLATIONS = {
    "contract-package": ("api/prism_api/job.py", "import yaml\n"),
    "two-sides": ("operator/prism_operator/reconcile.py", "from prism_pipeline import rows\n"),
    "pure-builders-and-status": ("operator/prism_operator/status/clock.py", "import kopf\n"),
    "one-kubernetes-client": ("operator/prism_operator/handlers.py", "import kubernetes\n"),
    "no-ml-in-operator": ("operator/prism_operator/settings.py", "def f():\n    import ray\n"),
    "cli-subcommands": ("cli/prism_cli/manifests.py", "def f():\n    import prism_pipeline.handlers\n"),
    "cli-pipeline-subcommands": ("cli/prism_cli/cmd_search.py", "def f():\n    import prism_operator\n"),
    "cli-operator-subcommands": ("cli/prism_cli/cmd_render.py", "def f():\n    import prism_pipeline\n"),
}


def test_every_contract_is_named_in_the_violation_table():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert sorted(c["id"] for c in contracts) == sorted(VIOLATIONS)


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_each_contract_catches_a_violation(tmp_path, contract):
    for folder in ("api", "operator", "worker_image", "cli"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path, line = VIOLATIONS[contract]
    target = tmp_path / path
    target.write_text(target.read_text() + "\n" + line)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tmp_path / f) for f in
                                                       ("api", "operator", "worker_image", "cli"))}
    proc = lint_imports(tmp_path, env)
    assert proc.returncode != 0, proc.stdout[-3000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    name = next(c["name"] for c in contracts if c["id"] == contract)
    assert f"{name} BROKEN" in proc.stdout, proc.stdout[-3000:]


def test_importing_the_cli_loads_neither_side():
    code = ("import sys, prism_cli.main; "
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'prism_operator', 'prism_pipeline', 'ray', 'torch', 'kopf', 'kubernetes'}); "
            "print(','.join(loaded))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == ""


def test_no_two_modules_share_a_name():
    """A reader who sees `progress` or `models` should not have to ask which one."""
    seen: dict[str, list[str]] = {}
    for folder in ("api", "operator", "worker_image", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.stem not in ("__init__", "__main__") and "__pycache__" not in path.parts:
                seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
