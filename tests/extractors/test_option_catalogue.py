"""The contract's list of each built-in kind's options (prism_api.extractor_options.BUILTIN_OPTIONS, which
refuses unknown options in `prism validate`, `prism run` and the operator) is exactly what the kind's
extractor reads: a name missing from the list would refuse a real option, an extra one would accept a typo."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from prism_api.extractor_options import BUILTIN_OPTIONS
from prism_pipeline.extractors import BUILTINS


def options_read(module_name: str) -> set[str]:
    """Option names a module reads: `.option("name", ...)` calls, module-level `*_OPTIONS` tuples, and
    options.dtype when it places a torch model (torch_device.placement reads it)."""
    path = Path(importlib.import_module(module_name).__file__)
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]
            if node.func.attr == "option" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "placement":
            names.add("dtype")
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.endswith("_OPTIONS")
                                                for t in node.targets) and isinstance(node.value, ast.Tuple):
            names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return names


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_the_contract_lists_what_each_kind_reads(kind):
    module = BUILTINS[kind].partition(":")[0]
    assert options_read(module) == set(BUILTIN_OPTIONS[kind])
