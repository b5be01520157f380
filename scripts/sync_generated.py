"""Regenerate what is generated from the job contract: crds/extractionjob.yaml (and its copy in the
kustomize base, manifests/crd/) and the README's API table.
Run after changing prism_api (`make crd`); tests fail until both match."""

from __future__ import annotations

from pathlib import Path

from prism_api.reference import BEGIN, END, markdown_reference
from prism_cli.cmd_crd import render

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    crd = render()
    (ROOT / "crds" / "extractionjob.yaml").write_text(crd)
    (ROOT / "manifests" / "crd" / "extractionjob.yaml").write_text(crd)
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + markdown_reference() + text[end:])
    print("wrote crds/extractionjob.yaml, manifests/crd/extractionjob.yaml and README.md's API reference")


if __name__ == "__main__":
    main()
