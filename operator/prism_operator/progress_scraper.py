"""Reading the pipeline's progress endpoint (Prometheus text on the Ray head's `progress` port).

`parse_progress` is pure; `fetch_progress` does one bounded HTTP GET. An unreachable endpoint is
normal while the cluster provisions, so fetching reports it as a result, never raises.

Only samples labelled with the reader's own job, namespace and attempt count: on a shared
RayCluster (`cluster.existing`) another job's driver may hold the progress port, and a previous
attempt's numbers must not pass for the current one's. Unlabelled samples are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from prism_api import progress_report as m
from prism_api.entrypoint import Outcome

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ProgressSnapshot:
    """One reading of the progress endpoint."""

    files_total: int = 0
    files_done: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    points_written: int = 0
    items: dict[str, int] = field(default_factory=dict)          # extractor -> items done
    items_failed: dict[str, int] = field(default_factory=dict)   # extractor -> items failed
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    failure_samples: tuple[tuple[str, str, str], ...] = ()       # (uri, stage, error)
    finished: bool = False
    start_time: float | None = None
    outcome: Outcome | None = None  # the pipeline's own verdict, once it has one


@dataclass(frozen=True)
class ProgressIdentity:
    """Whose samples to keep: the labels JOB_LABEL, NAMESPACE_LABEL and ATTEMPT_LABEL."""

    job: str
    namespace: str
    attempt: int

    def owns(self, labels: dict[str, str]) -> bool:
        """The sample is this job's (its job label matches; namespace and attempt, when present)."""
        return (labels.get(m.JOB_LABEL) == self.job
                and labels.get(m.NAMESPACE_LABEL, self.namespace) == self.namespace
                and labels.get(m.ATTEMPT_LABEL, str(self.attempt)) == str(self.attempt))


@dataclass(frozen=True)
class ProgressReading:
    snapshot: ProgressSnapshot | None
    error: str = ""  # why there is no snapshot


class ProgressFormatError(ValueError):
    pass


def parse_progress(text: str, identity: ProgressIdentity) -> ProgressSnapshot | None:
    """Parse the endpoint's Prometheus text, keeping `identity`'s samples only (None when it has
    none: another job's or attempt's endpoint). Counters are read by sample name (with `_total`)."""
    matched = 0
    scalars: dict[str, float] = {}
    outcome: Outcome | None = None
    items: dict[str, int] = {}
    items_failed: dict[str, int] = {}
    samples: list[tuple[str, str, str]] = []
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises bare ValueError/IndexError on garbage
        raise ProgressFormatError(f"progress endpoint returned invalid Prometheus text: {exc}") from None
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if not identity.owns(labels):
                continue
            matched += 1
            if name == m.ITEMS:
                items[labels.get("extractor", "")] = int(value)
            elif name == m.ITEMS_FAILED:
                items_failed[labels.get("extractor", "")] = int(value)
            elif name == m.FAILURE_SAMPLE:
                if value:
                    samples.append((labels.get("uri", ""), labels.get("stage", ""), labels.get("error", "")))
            elif name == m.OUTCOME:
                if value:
                    try:
                        outcome = Outcome(labels.get("outcome", ""))
                    except ValueError:
                        pass  # a verdict this operator does not know: fall back to Ray's message
            else:
                scalars[name] = value
    if not matched:
        return None
    return ProgressSnapshot(
        files_total=int(scalars.get(m.FILES_TOTAL, 0)),
        files_done=int(scalars.get(m.FILES_DONE, 0)),
        files_failed=int(scalars.get(m.FILES_FAILED, 0)),
        files_skipped=int(scalars.get(m.FILES_SKIPPED, 0)),
        points_written=int(scalars.get(m.POINTS_WRITTEN, 0)),
        items=items,
        items_failed=items_failed,
        cpu_seconds=float(scalars.get(m.CPU_SECONDS, 0.0)),
        gpu_seconds=float(scalars.get(m.GPU_SECONDS, 0.0)),
        failure_samples=tuple(sorted(samples)),
        finished=bool(scalars.get(m.PIPELINE_FINISHED, 0)),
        start_time=scalars.get(m.START_TIME),
        outcome=outcome,
    )


def progress_url(template: str, namespace: str, service: str) -> str:
    return template.format(namespace=namespace, service=service, port=m.PROGRESS_PORT,
                           path=m.PROGRESS_PATH)


async def fetch_progress(session: aiohttp.ClientSession, url: str, timeout: float,
                         identity: ProgressIdentity) -> ProgressReading:
    """GET the endpoint once, within `timeout` seconds; failures come back as `error`."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                return ProgressReading(None, f"{url}: HTTP {response.status}")
            body = await response.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                return ProgressReading(None, f"{url}: response larger than {MAX_BODY_BYTES} bytes")
    except TimeoutError:
        return ProgressReading(None, f"{url}: no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return ProgressReading(None, f"{url}: {type(exc).__name__}: {exc}")
    try:
        snapshot = parse_progress(body.decode("utf-8", errors="replace"), identity)
    except ProgressFormatError as exc:
        return ProgressReading(None, f"{url}: {exc}")
    if snapshot is None:
        return ProgressReading(None, f"{url}: no samples of job {identity.namespace}/{identity.job} "
                                     f"attempt {identity.attempt}")
    return ProgressReading(snapshot)
