"""The progress endpoint's contract: what the pipeline reports and the operator reads.

The pipeline's progress actor keeps one `ProgressReport` and serves `report.to_prometheus()` on
PROGRESS_PORT of the Ray head (a container port named PROGRESS_PORT_NAME, so it is on the head
Service). The operator reads it back with `ProgressReport.from_prometheus(text, identity)`. Both
directions live here, so the metric names, the labels and the meaning of every number have one
home; a round-trip test and a test that feeds the real pipeline's endpoint into the operator's
reader keep them honest.

Stages add `Counts` to the report once per batch (the one counter vocabulary: files, points,
bytes, decodes, CPU/GPU seconds, items and failed items per extractor). The report also carries
who it belongs to (job, namespace, attempt: on a shared RayCluster another job's driver may hold
the port, and an older attempt's numbers must not pass for the current one's) and the pipeline's
own verdict (`Outcome`, for example TooManyFailedFiles), so the operator is told why a job failed
instead of inferring it.

Importable with the standard library alone; the Prometheus text written and read here is the
exposition format 0.0.4 (counters' samples carry the `_total` suffix).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace

from .failed_file import (  # noqa: F401 (re-exported)
    MAX_ERROR_CHARS,
    MAX_FAILURE_SAMPLES,
    MAX_STAGE_CHARS,
    MAX_URI_CHARS,
    FailedFile,
)
from .outcome import Outcome

PROGRESS_PORT = 9090
PROGRESS_PORT_NAME = "progress"
PROGRESS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

FILES_TOTAL = "prism_files_total"                 # gauge: files listed
FILES_DONE = "prism_files_done_total"             # counter: files fully processed
FILES_FAILED = "prism_files_failed_total"         # counter: files in the failure ledger
FILES_SKIPPED = "prism_files_skipped_total"       # counter: files skipped by `incremental`
ITEMS = "prism_items_total"                       # counter{extractor}: items an extractor processed
ITEMS_FAILED = "prism_items_failed_total"         # counter{extractor}: items an extractor failed on
POINTS_WRITTEN = "prism_points_written_total"     # counter: points upserted into Qdrant
BYTES_READ = "prism_bytes_read_total"             # counter: bytes fetched from the source
DECODES = "prism_decodes_total"                   # counter: file decodes (== files when read once)
CPU_SECONDS = "prism_cpu_seconds_total"           # counter: CPU-seconds of stage work
GPU_SECONDS = "prism_gpu_seconds_total"           # counter: GPU-seconds of stage work
FAILURE_SAMPLE = "prism_failure_sample"           # gauge{uri,stage,error} = 1, at most 10 samples
PIPELINE_FINISHED = "prism_pipeline_finished"     # gauge: 1 once the pipeline has finished
START_TIME = "prism_pipeline_start_time_seconds"  # gauge: unix time the pipeline started
LISTING_COMPLETE = "prism_listing_complete"       # gauge: 1 once the source is listed to its end
                                                  # (files_total is final), 0 while it grows
OUTCOME = "prism_pipeline_outcome"                # gauge{outcome,message} = 1 once the pipeline has
                                                  # its verdict (Outcome), absent before

# Labels on every sample: which job and attempt the numbers belong to.
JOB_LABEL = "job"
NAMESPACE_LABEL = "namespace"
ATTEMPT_LABEL = "attempt"
EXTRACTOR_LABEL = "extractor"

MAX_MESSAGE_CHARS = 2000
MAX_TEXT_BYTES = 4 * 1024 * 1024  # a reader refuses a larger endpoint body


class ProgressFormatError(ValueError):
    """The text is not Prometheus exposition format."""


@dataclass
class Counts:
    """What stages and the driver count, in one vocabulary. Added once per batch (`+=`)."""

    files_done: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    points_written: int = 0
    bytes_read: int = 0
    decodes: int = 0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    items: dict[str, int] = field(default_factory=dict)         # extractor -> items processed
    items_failed: dict[str, int] = field(default_factory=dict)  # extractor -> items failed

    @property
    def files_finished(self) -> int:
        return self.files_done + self.files_failed + self.files_skipped

    def __iadd__(self, other: Counts) -> Counts:
        for f in _SCALARS:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for name, value in other.items.items():
            self.items[name] = self.items.get(name, 0) + value
        for name, value in other.items_failed.items():
            self.items_failed[name] = self.items_failed.get(name, 0) + value
        return self

    def __sub__(self, other: Counts) -> Counts:
        """What changed since `other` (an earlier copy of the same counts)."""
        return Counts(**{f: getattr(self, f) - getattr(other, f) for f in _SCALARS},
                      items={k: v - other.items.get(k, 0) for k, v in self.items.items()
                             if v != other.items.get(k, 0)},
                      items_failed={k: v - other.items_failed.get(k, 0) for k, v in self.items_failed.items()
                                    if v != other.items_failed.get(k, 0)})

    def copy(self) -> Counts:
        return replace(self, items=dict(self.items), items_failed=dict(self.items_failed))

    def is_zero(self) -> bool:
        return not any(getattr(self, f) for f in _SCALARS) and not self.items and not self.items_failed


_SCALARS = tuple(f.name for f in fields(Counts) if f.name not in ("items", "items_failed"))
# Counts' scalar fields and the counters they are served as.
_COUNTERS: dict[str, str] = {
    "files_done": FILES_DONE, "files_failed": FILES_FAILED, "files_skipped": FILES_SKIPPED,
    "points_written": POINTS_WRITTEN, "bytes_read": BYTES_READ, "decodes": DECODES,
    "cpu_seconds": CPU_SECONDS, "gpu_seconds": GPU_SECONDS,
}
_INTEGRAL = {f for f in _SCALARS if f not in ("cpu_seconds", "gpu_seconds")}


@dataclass(frozen=True)
class ReportIdentity:
    """Whose report this is: the labels every sample carries."""

    job: str
    namespace: str = ""
    attempt: int = 1

    def labels(self) -> dict[str, str]:
        return {JOB_LABEL: self.job, NAMESPACE_LABEL: self.namespace, ATTEMPT_LABEL: str(self.attempt)}

    def owns(self, labels: dict[str, str]) -> bool:
        """The sample is this job's: its job label matches, and its namespace and attempt when present."""
        return (labels.get(JOB_LABEL) == self.job
                and labels.get(NAMESPACE_LABEL, self.namespace) == self.namespace
                and labels.get(ATTEMPT_LABEL, str(self.attempt)) == str(self.attempt))


@dataclass
class ProgressReport:
    """One job attempt's progress, failures and verdict, as the pipeline serves it."""

    identity: ReportIdentity
    files_total: int = 0            # files listed so far: it grows while the listing streams
    listing_complete: bool = False  # the listing reached its end: files_total is final
    counts: Counts = field(default_factory=Counts)
    failures: list[FailedFile] = field(default_factory=list)  # at most MAX_FAILURE_SAMPLES
    finished: bool = False
    start_time: float | None = None
    outcome: Outcome | None = None  # the pipeline's own verdict, once it has one
    message: str = ""               # the verdict's explanation

    def listed(self, files_total: int, complete: bool) -> None:
        """The listing so far: `files_total` files (and unlistable entries), `complete` once it ended."""
        self.files_total = max(self.files_total, int(files_total))
        self.listing_complete = self.listing_complete or bool(complete)

    def add(self, counts: Counts, failures: list[FailedFile] = ()) -> None:
        self.counts += counts
        room = MAX_FAILURE_SAMPLES - len(self.failures)
        self.failures.extend(f.bounded() for f in list(failures)[:max(0, room)])

    def finish(self, totals: Counts, failures: list[FailedFile], outcome: Outcome | None, message: str) -> None:
        """The driver's exact totals replace the running counts (its stream is authoritative), except
        CPU/GPU seconds, which only the stages measure."""
        self.counts = replace(totals.copy(), cpu_seconds=max(totals.cpu_seconds, self.counts.cpu_seconds),
                              gpu_seconds=max(totals.gpu_seconds, self.counts.gpu_seconds))
        self.failures = [f.bounded() for f in failures[:MAX_FAILURE_SAMPLES]]
        self.finished = True
        if outcome is not None:
            self.set_outcome(outcome, message)

    def set_outcome(self, outcome: Outcome, message: str = "") -> None:
        self.outcome = Outcome(outcome)
        self.message = message[:MAX_MESSAGE_CHARS]

    # -- the wire format ----------------------------------------------------------------------------

    def to_prometheus(self) -> str:
        lines: list[str] = []
        own = self.identity.labels()

        def family(name: str, kind: str, doc: str, samples: list[tuple[dict[str, str], float]]) -> None:
            base = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
            lines.append(f"# HELP {base} {doc}")
            lines.append(f"# TYPE {base} {kind}")
            for labels, value in samples:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{text}}} {_number(value)}")

        family(FILES_TOTAL, "gauge", "Files listed.", [(own, self.files_total)])
        family(LISTING_COMPLETE, "gauge", "1 once the listing is complete (files total is final).",
               [(own, 1 if self.listing_complete else 0)])
        for attr, name in _COUNTERS.items():
            family(name, "counter", attr.replace("_", " ").capitalize() + ".", [(own, getattr(self.counts, attr))])
        for name, per in ((ITEMS, self.counts.items), (ITEMS_FAILED, self.counts.items_failed)):
            family(name, "counter", "Items per extractor" + (" that failed." if per is self.counts.items_failed else "."),
                   [({**own, EXTRACTOR_LABEL: k}, v) for k, v in sorted(per.items())])
        family(FAILURE_SAMPLE, "gauge", f"A failed file (at most {MAX_FAILURE_SAMPLES}).",
               [({**own, "uri": f.uri, "stage": f.stage, "error": f.error}, 1) for f in self.failures])
        family(PIPELINE_FINISHED, "gauge", "1 once the pipeline has finished.", [(own, 1 if self.finished else 0)])
        if self.start_time is not None:
            family(START_TIME, "gauge", "Unix time the pipeline started.", [(own, self.start_time)])
        if self.outcome is not None:
            family(OUTCOME, "gauge", "1 for the pipeline's verdict, once it has one.",
                   [({**own, "outcome": self.outcome.value, "message": self.message}, 1)])
        return "\n".join(lines) + "\n"

    @classmethod
    def from_prometheus(cls, text: str, identity: ReportIdentity) -> ProgressReport | None:
        """Read `identity`'s samples from an endpoint's text: None when it has none (another job's or
        attempt's endpoint). Unlabelled samples and unknown metrics are ignored; a verdict this reader
        does not know is dropped. Raises ProgressFormatError on text that is not Prometheus format."""
        report = cls(identity)
        matched = False
        by_name = {v: k for k, v in _COUNTERS.items()}
        for name, labels, value in parse_prometheus(text):
            if not identity.owns(labels):
                continue
            matched = True
            if name in by_name:
                attr = by_name[name]
                setattr(report.counts, attr, int(value) if attr in _INTEGRAL else float(value))
            elif name in (ITEMS, ITEMS_FAILED):
                per = report.counts.items if name == ITEMS else report.counts.items_failed
                per[labels.get(EXTRACTOR_LABEL, "")] = int(value)
            elif name == FILES_TOTAL:
                report.files_total = int(value)
            elif name == LISTING_COMPLETE:
                report.listing_complete = bool(value)
            elif name == FAILURE_SAMPLE and value:
                report.failures.append(FailedFile(labels.get("uri", ""), labels.get("stage", ""),
                                                  labels.get("error", "")).bounded())
            elif name == PIPELINE_FINISHED:
                report.finished = bool(value)
            elif name == START_TIME:
                report.start_time = value
            elif name == OUTCOME and value:
                try:
                    report.set_outcome(Outcome(labels.get("outcome", "")), labels.get("message", ""))
                except ValueError:
                    pass  # a verdict from a newer pipeline: the reader falls back to Ray's message
        if not matched:
            return None
        report.failures = sorted(report.failures, key=lambda f: (f.uri, f.stage, f.error))[:MAX_FAILURE_SAMPLES]
        return report


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) for every sample line of Prometheus text format 0.0.4."""
    if len(text) > MAX_TEXT_BYTES:
        raise ProgressFormatError(f"progress text larger than {MAX_TEXT_BYTES} bytes")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ProgressFormatError(f"line {number}: not a sample: {line[:120]!r}")
        name, label_text, value_text = match.groups()
        labels: dict[str, str] = {}
        rest = label_text or ""
        while rest.strip():
            lm = _LABEL.match(rest)
            if not lm:
                raise ProgressFormatError(f"line {number}: bad labels: {label_text[:120]!r}")
            labels[lm.group(1)] = re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], lm.group(2))
            rest = rest[lm.end():]
        try:
            value = float(value_text)
        except ValueError:
            raise ProgressFormatError(f"line {number}: bad value {value_text[:40]!r}") from None
        if math.isnan(value):
            continue
        out.append((name, labels, value))
    return out
