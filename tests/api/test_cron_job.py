"""The ExtractionCronJob contract: schedules and time zones as a CronJob takes them, errors that name
the field, a CRD generated from the models that admits the example and refuses what the API server
would, and a template checked like an ExtractionJob spec but mutable."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from prism_api import SpecError
from prism_api.cron_job import MAX_CRON_NAME_LENGTH, check_schedule, parse_cron_job, run_name
from prism_api.job import API_VERSION
from prism_cli.cmd_crd import render
from tests.spec.crd_check import admit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "scheduled.yaml").read_text())
CRD = yaml.safe_load((ROOT / "crds" / "extractioncronjob.yaml").read_text())


def cron(**spec) -> dict:
    doc = copy.deepcopy(EXAMPLE)
    doc["spec"].update(spec)
    return doc


def test_the_example_parses_and_is_admitted():
    parsed = parse_cron_job(EXAMPLE)
    assert parsed.spec.schedule == "30 2 * * *" and parsed.spec.time_zone == "Europe/Paris"
    assert parsed.spec.concurrency_policy == "Forbid" and parsed.spec.job_template.spec.incremental
    assert admit(EXAMPLE, crd=CRD, strict=True) == []


def test_the_committed_crd_is_the_generated_one():
    assert (ROOT / "crds" / "extractioncronjob.yaml").read_text() == render("ExtractionCronJob"), (
        "crds/extractioncronjob.yaml is stale: run `make crd`")


@pytest.mark.parametrize("schedule", ["* * * * *", "*/15 9-17 * * MON-FRI", "0 0 1,15 * ?", "@hourly", "@daily",
                                      "0 3 * JAN,JUL SUN", " 5 4 * * * "])
def test_kubernetes_schedules_are_accepted(schedule):
    assert check_schedule(schedule) is None
    assert parse_cron_job(cron(schedule=schedule)).spec.schedule == schedule.strip()


@pytest.mark.parametrize(("schedule", "says"), [
    ("* * * * * *", "five fields"),
    ("0 3 * *", "five fields"),
    ("61 * * * *", "not a valid cron schedule"),
    ("@every 5m", "unknown macro"),
    ("@reboot", "unknown macro"),
    ("TZ=Europe/Paris 0 3 * * *", "spec.timeZone"),
    ("CRON_TZ=UTC 0 3 * * *", "spec.timeZone"),
])
def test_bad_schedules_name_the_field_and_the_fix(schedule, says):
    with pytest.raises(SpecError) as err:
        parse_cron_job(cron(schedule=schedule))
    (error,) = err.value.errors
    assert error.path == "spec.schedule" and says in error.message, error


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(SpecError, match=r"spec.timeZone: unknown time zone 'Mars/Olympus'"):
        parse_cron_job(cron(timeZone="Mars/Olympus"))


def test_allow_is_not_offered():
    """Two runs must never write one collection at once."""
    with pytest.raises(SpecError, match=r"spec.concurrencyPolicy: must be one of 'Forbid' or 'Replace'"):
        parse_cron_job(cron(concurrencyPolicy="Allow"))
    assert "Allow" in "".join(admit(cron(concurrencyPolicy="Allow"), crd=CRD))


def test_the_template_is_checked_as_an_extraction_job_for_a_cluster():
    doc = cron()
    doc["spec"]["jobTemplate"]["spec"]["extractors"][0]["concurrency"] = {"min": 0}
    with pytest.raises(SpecError, match=r"spec.jobTemplate.spec.extractors\[0\].concurrency.min: must be >= 1"):
        parse_cron_job(doc)
    local = cron()
    del local["spec"]["jobTemplate"]["spec"]["sink"]["qdrant"]["url"]
    with pytest.raises(SpecError, match=r"spec.jobTemplate.spec.sink.qdrant"):
        parse_cron_job(local)


def test_the_name_leaves_room_for_the_run_suffix():
    long = cron()
    long["metadata"]["name"] = "a" * (MAX_CRON_NAME_LENGTH + 1)
    with pytest.raises(SpecError, match=r"metadata.name: must be at most .* so each run.s name"):
        parse_cron_job(long)
    assert admit(long, crd=CRD) != []
    long["metadata"]["name"] = "a" * MAX_CRON_NAME_LENGTH
    assert admit(long, crd=CRD) == [] and parse_cron_job(long)
    run = run_name(long["metadata"]["name"], datetime(2160, 1, 1, tzinfo=UTC))
    from prism_api import parse_job

    parse_job({"apiVersion": API_VERSION, "kind": "ExtractionJob", "metadata": {"name": run},
               "spec": EXAMPLE["spec"]["jobTemplate"]["spec"]})


def test_the_template_keeps_the_jobs_cross_field_rules_but_is_mutable():
    spec = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    template = spec["properties"]["jobTemplate"]["properties"]["spec"]
    assert "x-kubernetes-validations" not in template  # no immutability: a change applies to the next run
    group = template["properties"]["cluster"]["properties"]["workerGroups"]["items"]
    assert group["x-kubernetes-validations"][0]["rule"] == "self.minReplicas <= self.maxReplicas"
    changed = cron(schedule="0 4 * * *")
    changed["spec"]["jobTemplate"]["spec"]["sink"]["qdrant"]["collection"] = "docs-v2"
    assert admit(changed, old=EXAMPLE, crd=CRD) == []


def test_printer_columns_show_schedule_and_times():
    columns = [c["name"] for c in CRD["spec"]["versions"][0]["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Schedule", "Suspend", "Active", "Last Schedule", "Next", "Age"]
    assert CRD["spec"]["names"]["shortNames"] == ["xcj"]


def test_run_names_are_minutes_since_the_epoch():
    assert run_name("nightly", datetime(2026, 12, 2, 2, 30, tzinfo=UTC)) == "nightly-29936310"  # 1796178600 s / 60
