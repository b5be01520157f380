"""Regenerate what is generated from the job contract, and copy what the kustomize base and the Helm
chart need (neither loads anything outside its own folder):

- crds/<kind>.yaml for each of prism_cli.cmd_crd.KINDS, from prism_api, and the README's API table;
- every crds/*.yaml into manifests/crd/ and charts/prism-operator/crds/;
- manifests/rbac/clusterrole.yaml into charts/prism-operator/files/ (the chart's ClusterRole rules);
- manifests/monitoring/grafana-dashboard.json into charts/prism-operator/dashboards/prism.json;
- the PRISM_* settings OperatorConfig reads into the chart's values.schema.json.

Run after changing prism_api, the operator's settings, its RBAC or the dashboard (`make crd`); the
tests fail until every copy matches its source.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

from prism_api.reference import BEGIN, END, markdown_reference
from prism_cli.cmd_crd import KINDS, render
from prism_operator.settings import ENV_PREFIX, OperatorConfig

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
CHART = ROOT / "charts" / "prism-operator"
CRD_COPIES = [ROOT / "manifests" / "crd", CHART / "crds"]
# source -> the chart's copy
CHART_FILES = {
    ROOT / "manifests" / "rbac" / "clusterrole.yaml": CHART / "files" / "clusterrole.yaml",
    ROOT / "manifests" / "monitoring" / "grafana-dashboard.json": CHART / "dashboards" / "prism.json",
}
SCHEMA = CHART / "values.schema.json"
# Set from the chart's `metrics` values, not from `settings`.
METRICS_SETTINGS = {"PRISM_METRICS_ENABLED", "PRISM_METRICS_PORT"}


def chart_settings() -> list[str]:
    """The PRISM_* variables the chart's `settings` may set: all OperatorConfig reads, less METRICS_SETTINGS."""
    return [name for f in fields(OperatorConfig) if (name := ENV_PREFIX + f.name.upper()) not in METRICS_SETTINGS]


def sync_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    setting = {"type": ["string", "number", "integer"]}
    schema["properties"]["settings"]["properties"] = {name: setting for name in chart_settings()}
    SCHEMA.write_text(json.dumps(schema, indent=2) + "\n")


def copy(source: Path, target: Path, written: list[str]) -> None:
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, target)
    written.append(str(target.relative_to(ROOT)))


def main() -> None:
    written = ["README.md's API reference"]
    for kind in KINDS:
        (CRDS / f"{kind.lower()}.yaml").write_text(render(kind))
        written.append(f"crds/{kind.lower()}.yaml")
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + markdown_reference() + text[end:])
    sources = sorted(CRDS.glob("*.yaml"))
    for folder in CRD_COPIES:
        for stale in set(folder.glob("*.yaml")) - {folder / s.name for s in sources}:
            stale.unlink()
        for source in sources:
            copy(source, folder / source.name, written)
    for source, target in CHART_FILES.items():
        if source.exists():
            copy(source, target, written)
        else:
            target.unlink(missing_ok=True)
            print(f"note: {source.relative_to(ROOT)} does not exist: the chart has no {target.name}")
    sync_schema()
    written.append(str(SCHEMA.relative_to(ROOT)) + " (settings)")
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main()
