"""Reading the pipeline's progress endpoint (Prometheus text on the Ray head's `progress` port).

The format is the contract's: prism_api.progress_report.ProgressReport, read with its
`from_prometheus`. `fetch_progress` does one bounded HTTP GET. An unreachable endpoint is normal
while the cluster provisions, so fetching reports it as a result, never raises.

Only samples labelled with the reader's own job, namespace and attempt count (ReportIdentity): on a
shared RayCluster (`cluster.existing`) another job's driver may hold the progress port, and a
previous attempt's numbers must not pass for the current one's. Unlabelled samples are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from prism_api.progress_report import (
    MAX_TEXT_BYTES,
    PROGRESS_PATH,
    PROGRESS_PORT,
    ProgressFormatError,
    ProgressReport,
    ReportIdentity,
)


@dataclass(frozen=True)
class ProgressReading:
    report: ProgressReport | None
    error: str = ""  # why there is no report


def progress_url(template: str, namespace: str, service: str) -> str:
    return template.format(namespace=namespace, service=service, port=PROGRESS_PORT, path=PROGRESS_PATH)


async def fetch_progress(session: aiohttp.ClientSession, url: str, timeout: float,
                         identity: ReportIdentity) -> ProgressReading:
    """GET the endpoint once, within `timeout` seconds; failures come back as `error`."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                return ProgressReading(None, f"{url}: HTTP {response.status}")
            body = await response.content.read(MAX_TEXT_BYTES + 1)
            if len(body) > MAX_TEXT_BYTES:
                return ProgressReading(None, f"{url}: response larger than {MAX_TEXT_BYTES} bytes")
    except TimeoutError:
        return ProgressReading(None, f"{url}: no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return ProgressReading(None, f"{url}: {type(exc).__name__}: {exc}")
    try:
        report = ProgressReport.from_prometheus(body.decode("utf-8", errors="replace"), identity)
    except ProgressFormatError as exc:
        return ProgressReading(None, f"{url}: progress endpoint returned invalid Prometheus text: {exc}")
    if report is None:
        return ProgressReading(None, f"{url}: no samples of job {identity.namespace}/{identity.job} "
                                     f"attempt {identity.attempt}")
    return ProgressReading(report)
