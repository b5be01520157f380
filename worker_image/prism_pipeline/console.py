"""What a person sees: a live progress bar drawn from the progress actor, and the summary table."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from typing import Any, TextIO

from prism_api.progress_report import ProgressReport
from prism_pipeline.pipeline import JobResult

POLL_S = 0.5
PLAIN_EVERY_S = 10.0  # not a terminal (CI logs): one line every so often instead of redraws
REASON_WIDTH = 90     # the failure table's reason column wraps here (the whole reason is shown)


class ProgressBar:
    """Polls the progress actor from a thread (off the pipeline's hot path) and redraws one line."""

    def __init__(self, name: str, out: TextIO | None = None, width: int = 28):
        # sys.stderr as it is now, not as it was at import (a test's capture may have closed that one).
        out = out if out is not None else sys.stderr
        self.name, self.out, self.width = name, out, width
        self.actor: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tty = hasattr(out, "isatty") and out.isatty()
        self._started = time.monotonic()
        self._drawn = False

    def attach(self, actor: Any) -> None:
        self.actor = actor
        self._thread = threading.Thread(target=self._loop, name="prism-progress-bar", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop polling and draw the final state (the driver has pushed its exact totals by now)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.actor is None:
            return
        try:
            import ray

            line = self.render(ray.get(self.actor.snapshot.remote(), timeout=5))
        except Exception:
            line = None
        if line and self._tty:
            self.out.write("\r" + line.ljust(110)[:130] + "\n")
        elif line:
            self.out.write(line + "\n")
        elif self._drawn:
            self.out.write("\n")
        self.out.flush()

    def _loop(self) -> None:
        import ray

        last_plain = 0.0
        while not self._stop.wait(POLL_S):
            try:
                snap = ray.get(self.actor.snapshot.remote(), timeout=5)
            except Exception:
                continue  # a slow answer skips a frame; the bar is cosmetic
            line = self.render(snap)
            if self._tty:
                self.out.write("\r" + line.ljust(110)[:130])
                self._drawn = True
            elif time.monotonic() - last_plain >= PLAIN_EVERY_S:
                self.out.write(line + "\n")
                last_plain = time.monotonic()
            self.out.flush()

    def render(self, report: ProgressReport) -> str:
        c, total = report.counts, report.files_total
        finished = c.files_finished
        frac = finished / total if total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self._started
        return (f"{self.name} [{bar}] {finished}/{total} files  {c.files_failed} failed  "
                f"{c.files_skipped} skipped  {sum(c.items.values())} items  "
                f"{c.points_written} points  {_clock(elapsed)}")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def summary(result: JobResult) -> str:
    t, c = result.tracker, result.tracker.totals
    state = "Succeeded" if result.ok else "Failed"
    if result.stopped is not None and result.stopped.signum is not None:
        state = "Interrupted"
    lines = [
        f"Job {result.name}: {state} in {result.wall_s:.1f} s",
        "",
        f"  {'files':<10} {t.files_total} listed, {c.files_done} done, {c.files_failed} failed, "
        f"{c.files_skipped} skipped (already in the collection)",
        f"  {'decodes':<10} {c.decodes}   bytes read {_bytes(c.bytes_read)}",
        f"  {'points':<10} {c.points_written} written; collection {result.collection!r} holds "
        f"{result.points_in_collection if result.points_in_collection is not None else '?'}",
        f"  {'wall time':<10} {result.wall_s:.1f} s",
        "",
    ]
    names = result.extractors
    width = max([9, *map(len, names)])
    lines.append(f"  {'EXTRACTOR':<{width}}  {'ITEMS':>7}  {'FAILED':>6}")
    for name in names:
        lines.append(f"  {name:<{width}}  {c.items.get(name, 0):>7}  {c.items_failed.get(name, 0):>6}")
    if c.files_failed:
        lines += ["", f"  Failures ({c.files_failed}):", f"  {'STAGE':<10} {'FILES':>5}  REASON"]
        for (stage, reason), n in sorted(t.failure_reasons().items(), key=lambda kv: (-kv[1], kv[0])):
            # the whole reason (bounded by the ledger), wrapped under its column
            wrapped = textwrap.wrap(reason, REASON_WIDTH, break_on_hyphens=False) or [""]
            lines.append(f"  {stage:<10} {n:>5}  {wrapped[0]}")
            lines += [f"  {'':<10} {'':>5}  {more}" for more in wrapped[1:]]
        lines.append("")
        for f in t.samples[:10]:
            lines.append(f"  - {f.uri} [{f.stage}]")
        if c.files_failed > 10:
            lines.append(f"  ... and {c.files_failed - 10} more (see the failure ledger)")
    partial = sum(c.items_failed.get(name, 0) for name in names)
    if partial:
        lines += ["", f"  {partial} item{'s' * (partial != 1)} written without an extractor's output; list them with "
                  f"`prism failed --collection {result.collection}`, run again to reprocess their files"]
    lines += ["", "  " + result.message]
    return "\n".join(lines)
