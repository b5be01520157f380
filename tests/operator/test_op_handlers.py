"""The handler layer without the kopf runtime: the timer filter, settings, the status writer,
the operator's own metrics, and `prism operator`'s configuration errors."""

from __future__ import annotations

import pytest

from prism_api import ExtractionJobStatus, Phase
from prism_operator import operator_metrics as metrics
from prism_operator.handlers import needs_timer
from prism_operator.reconcile import old_status, write_status
from prism_operator.settings import ConfigError, OperatorConfig, configure_kopf


@pytest.mark.parametrize("spec,status,expected", [
    ({}, {}, True),
    ({}, {"phase": "Running"}, True),
    ({}, {"phase": "Suspended"}, True),
    ({}, {"phase": "Succeeded"}, False),
    ({"ttlSecondsAfterFinished": 60}, {"phase": "Failed"}, True),
    ({"ttlSecondsAfterFinished": 60}, {"phase": "Succeeded", "conditions": [
        {"type": "ClusterReady", "status": "False", "reason": "ClusterDeleted"}]}, False),
    ({"ttlSecondsAfterFinished": 60}, {"phase": "Succeeded", "conditions": [
        {"type": "ClusterReady", "status": "Unknown", "reason": "RayJobDeleted"}]}, False),
    ({"ttlSecondsAfterFinished": 60}, {"phase": "Failed", "reason": "InvalidSpec"}, False),
    ({"suspend": True}, {"phase": "Suspended", "reason": "Suspended"}, False),
    # The RayCluster is not yet as it should be (suspended, or deleted under Kueue): keep correcting.
    ({"suspend": True}, {"phase": "Suspended", "reason": "Suspending"}, True),
    ({"suspend": False}, {"phase": "Suspended", "reason": "Suspended"}, True),
    # The pipeline's own InvalidSpec verdict left a RayCluster for the TTL to delete.
    ({"ttlSecondsAfterFinished": 60}, {"phase": "Failed", "reason": "InvalidSpec", "rayCluster": "c-1a2b3"}, True),
])
def test_timer_runs_only_while_there_is_work(spec, status, expected):
    assert needs_timer(spec=spec, status=status) is expected


def test_config_from_env():
    config = OperatorConfig.from_env({"PRISM_TIMER_INTERVAL": "2.5", "PRISM_METRICS_ENABLED": "false",
                                      "PRISM_PROGRESS_URL_TEMPLATE": "http://proxy/{namespace}/{service}{path}"})
    assert (config.timer_interval, config.metrics_enabled) == (2.5, False)
    assert OperatorConfig.from_env({}) == OperatorConfig()
    for env, message in [({"PRISM_TIMER_INTERVAL": "soon"}, "PRISM_TIMER_INTERVAL: must be float"),
                         ({"PRISM_TIMER_INTERVAL": "0"}, "must be > 0"),
                         ({"PRISM_METRICS_ENABLED": "maybe"}, "PRISM_METRICS_ENABLED"),
                         ({"PRISM_PROGRESS_URL_TEMPLATE": "http://{host}/"}, "bad placeholder 'host'")]:
        with pytest.raises(ConfigError, match=message):
            OperatorConfig.from_env(env)


def test_watch_timeout_is_whole_seconds():
    """kopf sends it as `timeoutSeconds`; the API server answers `300.0` with 400 (strconv.ParseInt)."""
    import kopf

    assert OperatorConfig.from_env({"PRISM_WATCH_TIMEOUT": "120"}).watch_timeout == 120
    with pytest.raises(ConfigError, match="PRISM_WATCH_TIMEOUT: must be int"):
        OperatorConfig.from_env({"PRISM_WATCH_TIMEOUT": "120.5"})
    with pytest.raises(ConfigError, match="PRISM_WATCH_TIMEOUT: must be whole seconds"):
        OperatorConfig(watch_timeout=120.0).check()
    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorConfig())
    assert type(settings.watching.server_timeout) is int and settings.watching.server_timeout == 300
    assert f"timeoutSeconds={settings.watching.server_timeout}" == "timeoutSeconds=300"
    # A delete waits this long for a running timer, not kopf's default minute.
    assert settings.background.cancellation_polling <= 5


def test_dashboard_settings():
    config = OperatorConfig.from_env({"PRISM_DASHBOARD_URL_TEMPLATE": "http://proxy/{namespace}/{service}/"})
    assert config.dashboard_url_template == "http://proxy/{namespace}/{service}/"
    assert OperatorConfig().dashboard_url_template == "http://{service}.{namespace}.svc:8265"
    with pytest.raises(ConfigError, match="PRISM_DASHBOARD_URL_TEMPLATE: bad placeholder 'port'"):
        OperatorConfig.from_env({"PRISM_DASHBOARD_URL_TEMPLATE": "http://{service}:{port}"})


def test_write_status_patches_only_the_diff():
    body = {"status": ExtractionJobStatus(phase=Phase.RUNNING, attempt=1).to_wire()}
    patch: dict = {}
    assert write_status(patch, body, ExtractionJobStatus(phase=Phase.RUNNING, attempt=1)) == {}
    assert patch == {}
    write_status(patch, body, ExtractionJobStatus(phase=Phase.SUCCEEDED, attempt=1))
    assert patch == {"status": {"phase": "Succeeded"}}


def test_old_status_survives_a_mangled_status():
    assert old_status({"status": {"phase": "Running", "attempt": 2, "conditions": "oops"}}).attempt == 2
    assert old_status({"status": {"phase": "Exploded"}}) == ExtractionJobStatus()
    assert old_status({}) == ExtractionJobStatus()


def test_job_metrics_follow_the_jobs():
    from prometheus_client import generate_latest

    metrics.observe_job("ns", "a", ExtractionJobStatus(phase=Phase.RUNNING))
    metrics.observe_job("ns", "b", ExtractionJobStatus(phase=Phase.RUNNING))
    metrics.observe_job("ns", "b", ExtractionJobStatus(phase=Phase.FAILED))
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'prism_operator_jobs{phase="Running"} 1.0' in text and 'prism_operator_jobs{phase="Failed"} 1.0' in text
    metrics.forget_job("ns", "a")
    metrics.forget_job("ns", "b")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'prism_operator_jobs{phase="Running"} 0.0' in text
    assert 'job="a"' not in text


def test_prism_operator_rejects_bad_settings(monkeypatch, capsys):
    from prism_cli.main import main

    monkeypatch.setenv("PRISM_TIMER_INTERVAL", "-1")
    assert main(["operator"]) == 2
    assert "PRISM_TIMER_INTERVAL: must be > 0" in capsys.readouterr().err


async def test_unreachable_api_makes_kopf_retry(progress):
    """A reconcile whose API calls fail raises kopf's TemporaryError (kopf retries it after the
    backoff) and keeps the job's timer alive, instead of passing silently."""
    import aiohttp
    import kopf
    from kubernetes import client

    from prism_operator.handlers import Runtime
    from prism_operator.k8s_api import KubeApi
    from prism_operator.reconcile import Reconciler

    from .conftest import BASE_JOB, free_port, operator_config

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = operator_config(progress)
    runtime = Runtime(config)
    before = metrics.API_ERRORS.labels(operation="get rayclusters")._value.get()
    async with aiohttp.ClientSession() as session:
        runtime.reconciler = Reconciler(KubeApi(client.ApiClient(configuration), timeout=2), session, config)
        body = {**BASE_JOB, "metadata": {**BASE_JOB["metadata"], "uid": "u1", "generation": 1},
                "status": {"phase": "Succeeded"}}
        memo, patch = kopf.Memo(), {}
        with pytest.raises(kopf.TemporaryError, match="get rayclusters"):
            await runtime.reconcile(body, patch, memo)
    assert patch == {}  # nothing observed, nothing written
    assert metrics.API_ERRORS.labels(operation="get rayclusters")._value.get() == before + 1
    assert needs_timer(spec=body["spec"], status=body["status"], memo=memo) is True
