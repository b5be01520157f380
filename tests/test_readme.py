"""The README's promises: the API table is the generated one; the two set-up commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from prism_api.reference import BEGIN, END, markdown_reference

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_api_reference_is_current():
    start, end = README.index(BEGIN), README.index(END) + len(END)
    assert README[start:end] == markdown_reference(), (
        "README's API reference is stale: replace the block with `prism crd --reference`"
    )


def test_every_spec_field_is_in_the_reference():
    table = markdown_reference()
    for path in ("spec.source.secretRef", "spec.extractors[].concurrency.min", "spec.cluster.workerGroups[].gpus",
                 "spec.ttlSecondsAfterFinished", "status.progress.percent", "status.conditions[].reason"):
        assert f"`{path}`" in table


def test_readme_commands_exist_in_makefile():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make ([\w-]+)", README, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"README runs `make {target}`, Makefile lacks it"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
