"""Run `prism run` as a subprocess and watch it from outside, for the benchmarks.

What is measured (no timing assertion anywhere; the callers print figures):
- wall: Popen to exit, so Python start-up, imports, Ray start-up and shutdown are all in it;
- the job's own time: from `prism_pipeline_start_time_seconds` (the pipeline's start, unix time) to
  the first scrape showing `prism_pipeline_finished` 1 (else to the process's exit);
- time to first item: the first scrape where `prism_items_total` (any extractor) or files done is > 0,
  from the process's start and from the job's start;
- driver peak RSS: VmHWM of the `prism run` process itself from /proc/<pid>/status (Ray's raylet, GCS
  and workers are other processes and are not in it), read at every scrape; VmHWM is a high-water mark,
  so the last value read before the exit is the peak up to then;
- CPU seconds of the whole process tree (the driver, Ray's GCS, raylet and workers): user + system
  time of `prism run` and of every descendant, each its own (no reaped children's), read from /proc/<pid>/stat at
  every scrape, the last value per process summed; a process living less than a scrape interval is
  missed. On a shared machine CPU time is steadier than wall time;
- the final counters: the last scrape, and the summary `prism run` prints (bytes read, skipped files).
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRISM = ROOT / ".venv" / "bin" / "prism"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> metric name -> the sum of its samples (one job per endpoint here)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                continue
    return out


def scrape(port: int, timeout: float = 1.0) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
            return parse_metrics(resp.read().decode())
    except (OSError, ValueError):
        return None


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> dict[int, float]:
    """pid -> CPU seconds (own utime + stime) of root and of each of its descendants, now."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
    tree, todo = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return {pid: cpu[pid] for pid in tree if pid in cpu}


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class PrismRun:
    rc: int
    wall_s: float
    output: str
    peak_rss_mib: float | None = None
    job_start_unix: float | None = None
    job_s: float | None = None
    first_item_from_process_s: float | None = None
    first_item_from_job_s: float | None = None
    listing_complete_from_process_s: float | None = None
    # from the job's start: the first scrape with bytes read / decodes > 0 (the read stage's first
    # block), with items > 0 (an extractor's first batch), with files done > 0 (the sink's first write)
    first_read_from_job_s: float | None = None
    first_items_from_job_s: float | None = None
    first_done_from_job_s: float | None = None
    listing_complete_from_job_s: float | None = None
    files_total_max: float = 0.0
    cpu_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def summary_value(self, label: str) -> str | None:
        m = re.search(rf"{label}\s+(\S+(?: [KMG]?B)?)", self.output)
        return m.group(1) if m else None

    @property
    def bytes_read_summary(self) -> str | None:
        return self.summary_value("bytes read")

    @property
    def skipped_summary(self) -> int | None:
        m = re.search(r"(\d+) skipped", self.output)
        return int(m.group(1)) if m else None

    @property
    def done_summary(self) -> int | None:
        m = re.search(r"(\d+) done", self.output)
        return int(m.group(1)) if m else None


def run_prism(manifest: Path, state_dir: Path, *, env: dict[str, str] | None = None, interval_s: float = 0.25,
              timeout_s: float = 7200, extra_args: list[str] | None = None) -> PrismRun:
    port = free_port()
    cmd = [str(PRISM), "run", str(manifest), "--state-dir", str(state_dir), "--progress-port", str(port),
           "--no-progress-bar", *(extra_args or [])]
    cpu_seen: dict[int, float] = {}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, cwd=str(ROOT))
    out_chunks: list[str] = []
    # Read the output in a thread so a full pipe never blocks the child.
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    run = PrismRun(rc=-1, wall_s=0.0, output="")
    peak = None
    finished_unix = None
    while proc.poll() is None:
        if time.monotonic() - started > timeout_s:
            proc.kill()
            break
        for pid, secs in tree_cpu_s(proc.pid).items():
            cpu_seen[pid] = max(cpu_seen.get(pid, 0.0), secs)
        hwm = vm_hwm_kib(proc.pid)
        if hwm is not None:
            peak = max(peak or 0, hwm)
        m = scrape(port)
        now = time.monotonic()
        if m:
            run.metrics = m
            run.files_total_max = max(run.files_total_max, m.get("prism_files_total", 0.0))
            if run.job_start_unix is None and m.get("prism_pipeline_start_time_seconds"):
                run.job_start_unix = m["prism_pipeline_start_time_seconds"]
            if run.first_item_from_process_s is None and (m.get("prism_items_total", 0) > 0
                                                         or m.get("prism_files_done_total", 0) > 0):
                run.first_item_from_process_s = now - started
                if run.job_start_unix:
                    run.first_item_from_job_s = time.time() - run.job_start_unix
            if run.job_start_unix:
                since = time.time() - run.job_start_unix
                if run.first_read_from_job_s is None and (m.get("prism_bytes_read_total", 0) > 0
                                                          or m.get("prism_decodes_total", 0) > 0):
                    run.first_read_from_job_s = since
                if run.first_items_from_job_s is None and m.get("prism_items_total", 0) > 0:
                    run.first_items_from_job_s = since
                if run.first_done_from_job_s is None and m.get("prism_files_done_total", 0) > 0:
                    run.first_done_from_job_s = since
                if run.listing_complete_from_job_s is None and m.get("prism_listing_complete", 0) >= 1:
                    run.listing_complete_from_job_s = since
            if run.listing_complete_from_process_s is None and m.get("prism_listing_complete", 0) >= 1:
                run.listing_complete_from_process_s = now - started
            if finished_unix is None and m.get("prism_pipeline_finished", 0) >= 1:
                finished_unix = time.time()
        time.sleep(interval_s)
    rc = proc.wait()
    ended_unix = time.time()
    reader.join(timeout=10)
    run.rc = rc
    run.cpu_s = sum(cpu_seen.values())
    run.wall_s = time.monotonic() - started
    run.output = "".join(out_chunks)
    run.peak_rss_mib = peak / 1024 if peak else None
    if run.job_start_unix:
        run.job_s = (finished_unix or ended_unix) - run.job_start_unix
    return run
