"""The Grafana dashboard (manifests/monitoring/grafana-dashboard.json) and the PodMonitor that feeds it.

Every query may name only metrics the code exports, with labels those metrics carry. Both come from
the code, not from a list kept here: the operator's own registry (every metric touched once so its
labelled samples appear) and the Prometheus text of a real `ProgressReport` (the pipeline's progress
endpoint). PromQL is read by a small tokenizer: label matchers, `by`/`without`/`on`/`ignoring`
clauses, ranges, strings and Grafana variables are taken apart before the remaining identifiers
count as metric names. The PodMonitor's selector is checked against the labels the RayCluster
builder puts on the head pod, as KubeRay labels the pod it creates from that template.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from prism_api import parse_job
from prism_api.conventions import JOB_LABEL
from prism_api.outcome import Outcome
from prism_api.progress_report import (
    PROGRESS_PATH,
    PROGRESS_PORT_NAME,
    Counts,
    FailedFile,
    ProgressReport,
    ReportIdentity,
    parse_prometheus,
)
from prism_operator import operator_metrics
from prism_operator.builders import build_ray_cluster
from prism_operator.builders.raycluster import HEAD_CONTAINER, owned_cluster_name
from tests.operator.conftest import BASE_JOB

from .repo_files import ROOT

DASHBOARD_PATH = ROOT / "manifests" / "monitoring" / "grafana-dashboard.json"
PODMONITOR_PATH = ROOT / "manifests" / "monitoring" / "podmonitor-progress.yaml"
DASHBOARD = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "bargauge"}
GRID_WIDTH = 24


# -- what the code exports: sample name -> label names ----------------------------------------------------

def operator_exports() -> dict[str, set[str]]:
    """The operator registry's samples (with _bucket/_sum/_count/_total/_created), after touching every
    labelled metric once; the touched children are removed again."""
    touched = []
    for metric in vars(operator_metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            values = tuple(f"dashboard-test-{name}" for name in metric._labelnames)
            metric.labels(*values)
            touched.append((metric, values))
    try:
        families = list(operator_metrics.REGISTRY.collect())
    finally:
        for metric, values in touched:
            metric.remove(*values)
    out: dict[str, set[str]] = {}
    for family in families:
        assert family.samples, f"{family.name} has no samples: a labelled metric this test did not touch"
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def sample_report() -> ProgressReport:
    """A report with every family present: two extractors, a failed item, a failed file, a verdict."""
    counts = Counts(files_done=3, files_failed=1, files_skipped=1, points_written=40, bytes_read=1 << 20,
                    decodes=4, cpu_seconds=12.5, gpu_seconds=3.25, items={"text": 7, "faces": 5},
                    items_failed={"faces": 1})
    return ProgressReport(ReportIdentity("campaign", "media", 2), files_total=10, counts=counts,
                          failures=[FailedFile("s3://media/campaign/b.mp4", "faces", "CUDA out of memory")],
                          finished=True, start_time=1_790_000_000.0, outcome=Outcome.TOO_MANY_FAILED_FILES,
                          message="1 of 5 files failed")


def progress_exports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, labels, _ in parse_prometheus(sample_report().to_prometheus()):
        out.setdefault(name, set()).update(labels)
    return out


EXPORTED = {**operator_exports(), **progress_exports()}


def test_the_exports_are_read_from_the_code():
    assert {"prism_operator_reconcile_seconds_bucket", "prism_operator_api_errors_total",
            "prism_operator_job_files_done", "prism_items_total", "prism_failure_sample"} <= set(EXPORTED)
    assert EXPORTED["prism_items_total"] == {"job", "namespace", "attempt", "extractor"}
    assert EXPORTED["prism_operator_job_files_total"] == {"namespace", "job"}
    assert "le" in EXPORTED["prism_operator_reconcile_seconds_bucket"]
    assert "prism_files_processed_total" not in EXPORTED


# -- PromQL, taken apart ---------------------------------------------------------------------------------

AGGREGATIONS = frozenset("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
                         "limit_ratio".split())
FUNCTIONS = frozenset("""
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
    clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
    double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
    histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase irate label_join
    label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort
    sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh
    time timestamp vector year""".split())
GROUPING = frozenset("by without on ignoring group_left group_right".split())
KEYWORDS = frozenset("and or unless bool offset atan2 inf nan".split())

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{[A-Za-z0-9_]+(?::[A-Za-z]+)?\}|\$[A-Za-z0-9_]+)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}@])
""", re.VERBOSE)


@dataclass
class Query:
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)  # metric name, labels it matches on
    grouping: set[str] = field(default_factory=set)                      # by/without/on/ignoring/group_x labels
    problems: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors}


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 30]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
        pos = match.end()
    return tokens


def _labels_until(tokens: list[tuple[str, str]], i: int, close: str, matchers: bool) -> tuple[set[str], int]:
    """Label names from `i` to the closing token: `a, b)` or `a="x", b=~"$y"}`; returns them and the index
    after the closing token."""
    labels: set[str] = set()
    while i < len(tokens) and tokens[i][1] != close:
        kind, text = tokens[i]
        if kind != "ident":
            raise ValueError(f"expected a label name, got {text!r}")
        labels.add(text)
        i += 1
        if matchers:
            if i + 1 >= len(tokens) or tokens[i][1] not in ("=", "!=", "=~", "!~") or tokens[i + 1][0] != "string":
                raise ValueError(f"label {text}: expected an operator and a string")
            i += 2
        if i < len(tokens) and tokens[i][1] == ",":
            i += 1
    if i >= len(tokens):
        raise ValueError(f"no closing {close!r}")
    return labels, i + 1


def parse_promql(expr: str) -> Query:
    query, tokens, i = Query(), tokenize(expr), 0
    texts = [text for kind, text in tokens if kind == "op"]
    if texts.count("(") != texts.count(")"):
        query.problems.append("unbalanced parentheses")
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "op" and text == "{":
            query.problems.append("a selector without a metric name")
            _, i = _labels_until(tokens, i + 1, "}", matchers=True)
            continue
        if kind == "ident":
            if text in GROUPING:
                if following == "(":
                    labels, i = _labels_until(tokens, i + 2, ")", matchers=False)
                    query.grouping |= labels
                    continue
            elif text in KEYWORDS or text in AGGREGATIONS or text in FUNCTIONS:
                pass
            elif following == "(":
                query.problems.append(f"{text}() is not a PromQL function")
            elif following == "{":
                labels, i = _labels_until(tokens, i + 2, "}", matchers=True)
                query.selectors.append((text, labels))
                continue
            else:
                query.selectors.append((text, set()))
        i += 1
    return query


def expr_errors(expr: str, legend: str = "", exported: dict[str, set[str]] = EXPORTED) -> list[str]:
    """What is wrong with one query: unknown metrics, labels a metric does not carry, legend labels the
    result cannot have."""
    try:
        query = parse_promql(expr)
    except ValueError as exc:
        return [str(exc)]
    errors = list(query.problems)
    if not query.selectors:
        errors.append("names no metric")
    for name, labels in query.selectors:
        if name not in exported:
            errors.append(f"{name} is not exported by the operator or the progress endpoint")
            continue
        errors += [f"{name} has no label {label!r} (it has {sorted(exported[name])})"
                   for label in sorted(labels - exported[name])]
        errors += [f"groups by {label!r}, which {name} does not carry"
                   for label in sorted(query.grouping - exported[name])]
    carried = query.grouping or set().union(*(exported.get(name, set()) for name in query.metrics))
    errors += [f"legend {{{{{label}}}}}: not a label of the result" for label in
               sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) - carried)]
    return errors


def test_promql_is_taken_apart():
    query = parse_promql('sum by (namespace, job, extractor) (rate(prism_items_total{namespace=~"$namespace", '
                         'job=~"${job}"}[$__rate_interval])) / on (job) group_left '
                         'max without (attempt) (prism_files_total offset 5m) > bool 1e-3')
    assert query.selectors == [("prism_items_total", {"namespace", "job"}), ("prism_files_total", set())]
    assert query.grouping == {"namespace", "job", "extractor", "attempt"}
    assert query.problems == []


@pytest.mark.parametrize(("expr", "wanted"), [
    ("sum(rate(prism_files_processed_total[5m]))", "prism_files_processed_total is not exported"),
    ('prism_operator_jobs{extractor="text"}', "prism_operator_jobs has no label 'extractor'"),
    ("sum by (extractor) (rate(prism_files_done_total[5m]))", "groups by 'extractor'"),
    ('{__name__="prism_files_total"}', "a selector without a metric name"),
    ("rated(prism_files_total[5m])", "rated() is not a PromQL function"),
    ("sum(rate(prism_files_total[5m])", "unbalanced parentheses"),
    ('prism_files_total{job="a"', "no closing"),
])
def test_the_checker_catches_a_wrong_query(expr, wanted):
    errors = expr_errors(expr)
    assert any(wanted in e for e in errors), errors


def test_the_checker_catches_a_legend_label_the_result_lacks():
    assert expr_errors("sum by (job) (prism_items_total)", "{{extractor}}")
    assert not expr_errors("sum by (job, extractor) (prism_items_total)", "{{job}} {{extractor}}")


# -- the dashboard ---------------------------------------------------------------------------------------

def all_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # a collapsed row keeps its panels inside
    return out


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def variable_query(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def dashboard_errors(dashboard: dict) -> list[str]:
    """Every query in every panel and every variable, checked against the exports."""
    errors = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            errors += [f"panel {panel['title']!r} {target['refId']}: {e}"
                       for e in expr_errors(target["expr"], target.get("legendFormat", ""))]
    for name, variable in variables(dashboard).items():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", variable_query(variable), re.DOTALL)
        if not match:
            errors.append(f"variable {name}: not a label_values(metric, label) query")
            continue
        selector, label = match.groups()
        errors += [f"variable {name}: {e}" for e in expr_errors(selector)]
        for metric in parse_promql(selector).metrics & set(EXPORTED):
            if label not in EXPORTED[metric]:
                errors.append(f"variable {name}: {metric} has no label {label!r}")
    return errors


def test_every_query_names_exported_metrics_and_their_labels():
    targets = [t for p in all_panels(DASHBOARD) for t in p.get("targets", [])]
    assert len(targets) >= 20
    assert dashboard_errors(DASHBOARD) == []


def test_a_panel_with_a_wrong_metric_fails_the_check():
    broken = copy.deepcopy(DASHBOARD)
    target = next(t for p in all_panels(broken) for t in p.get("targets", []) if "prism_files_done_total" in t["expr"])
    target["expr"] = target["expr"].replace("prism_files_done_total", "prism_files_processed_total")
    assert any("prism_files_processed_total is not exported" in e for e in dashboard_errors(broken))
    broken = copy.deepcopy(DASHBOARD)
    variables(broken)["job"]["query"]["query"] = "label_values(prism_operator_jobs, job)"
    assert any("prism_operator_jobs has no label 'job'" in e for e in dashboard_errors(broken))


def test_the_dashboard_covers_what_the_issue_asks():
    exprs = " ".join(t["expr"] for p in all_panels(DASHBOARD) for t in p.get("targets", []))
    for metric in ("prism_operator_jobs", "prism_operator_reconcile_seconds_bucket",
                   "prism_operator_reconcile_errors_total", "prism_operator_api_errors_total",
                   "prism_operator_job_files_total", "prism_operator_job_files_done",
                   "prism_operator_job_files_failed", "prism_items_total", "prism_points_written_total",
                   "prism_cpu_seconds_total", "prism_gpu_seconds_total", "prism_files_total"):
        assert re.search(rf"\b{metric}\b", exprs), f"no panel shows {metric}"
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs
    eta = next(p for p in all_panels(DASHBOARD) if p["title"] == "ETA")
    assert eta["fieldConfig"]["defaults"]["unit"] == "s"


def test_the_dashboard_is_grafana_json():
    assert DASHBOARD["uid"] == "prism-overview"
    assert 39 <= DASHBOARD["schemaVersion"] <= 41
    assert DASHBOARD["id"] is None, "an exported id clashes on import; Grafana assigns one"
    panels = all_panels(DASHBOARD)
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), ids
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        assert panel["type"] in PANEL_TYPES, where
        assert panel.get("datasource") == DATASOURCE, f"{where}: datasource must be the ${{datasource}} variable"
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and all(isinstance(grid[k], int) for k in "hwxy"), where
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_WIDTH, where
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                cells[(x, y)] = where
        if panel["type"] == "row":
            assert not panel.get("targets"), where
            continue
        targets = panel.get("targets", [])
        assert targets, f"{where}: no query"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{where}: refIds {refs}"
        for target in targets:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, f"{where} {target['refId']}"
            assert target.get("expr", "").strip(), f"{where} {target['refId']}: empty expr"


def test_every_variable_used_is_defined():
    defined = variables(DASHBOARD)
    assert defined["datasource"]["type"] == "datasource" and defined["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job"):
        assert defined[name]["type"] == "query" and defined[name]["datasource"] == DATASOURCE, name
    text = json.dumps(DASHBOARD)
    used = set(re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", text))
    names = {n for group in used for n in group if n and not n.startswith("__")}  # $__rate_interval: built in
    assert {"datasource", "namespace", "job"} <= names
    assert names <= set(defined), f"undefined variables: {sorted(names - set(defined))}"


# -- the PodMonitor that scrapes the progress endpoint --------------------------------------------------

def kuberay_pod_labels(node_type: str, cluster: str, group: str, template_labels: dict[str, str]) -> dict[str, str]:
    """The labels KubeRay v1.7 puts on a Ray pod (ray-operator/controllers/ray/common/pod.go, labelPod): its
    own, then the template's, except that ray.io/node-type, ray.io/group and ray.io/cluster stay its own."""
    own = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster, "ray.io/node-type": node_type,
           "ray.io/group": group, "ray.io/identifier": f"{cluster}-{node_type}",
           "app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}
    fixed = ("ray.io/node-type", "ray.io/group", "ray.io/cluster")
    return {**own, **{k: v for k, v in template_labels.items() if k not in fixed}}


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


PODMONITOR = yaml.safe_load(PODMONITOR_PATH.read_text(encoding="utf-8"))
JOB = parse_job({**BASE_JOB, "metadata": {**BASE_JOB["metadata"], "uid": "6f1c2a3e-0000-4000-8000-000000000002"}},
                target="cluster")
RAY_CLUSTER = build_ray_cluster(JOB)


def test_the_podmonitor_selects_prism_head_pods_only():
    spec = RAY_CLUSTER["spec"]
    name = owned_cluster_name(JOB)
    head = kuberay_pod_labels("head", name, "headgroup", spec["headGroupSpec"]["template"]["metadata"]["labels"])
    assert selects(PODMONITOR["spec"]["selector"], head), (PODMONITOR["spec"]["selector"], head)
    for group in spec["workerGroupSpecs"]:  # workers serve no progress endpoint
        worker = kuberay_pod_labels("worker", name, group["groupName"], group["template"]["metadata"]["labels"])
        assert not selects(PODMONITOR["spec"]["selector"], worker), group["groupName"]
    foreign_head = kuberay_pod_labels("head", "shared", "headgroup", {})  # a RayCluster Prism does not own
    assert not selects(PODMONITOR["spec"]["selector"], foreign_head)
    # The Prism half of the selector is the builder's: without the job label the head pod is not selected.
    unlabelled = {k: v for k, v in head.items() if k != JOB_LABEL}
    assert not selects(PODMONITOR["spec"]["selector"], unlabelled)


def test_the_podmonitor_scrapes_the_progress_port_in_every_namespace():
    spec = PODMONITOR["spec"]
    assert PODMONITOR["apiVersion"] == "monitoring.coreos.com/v1" and PODMONITOR["kind"] == "PodMonitor"
    assert spec["namespaceSelector"] == {"any": True}
    [endpoint] = spec["podMetricsEndpoints"]
    assert endpoint["port"] == PROGRESS_PORT_NAME and endpoint["path"] == PROGRESS_PATH
    # The dashboard filters on the samples' own job and namespace labels; without honorLabels Prometheus
    # renames them exported_job and exported_namespace.
    assert endpoint["honorLabels"] is True
    [container] = [c for c in RAY_CLUSTER["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
                   if c["name"] == HEAD_CONTAINER]
    assert PROGRESS_PORT_NAME in {p["name"] for p in container["ports"]}
