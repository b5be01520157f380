"""One extractor as a Ray Data actor stage: the model loads once per actor, then every batch
passes through. Items the extractor does not accept (other modalities, file markers) pass through
untouched; the rest get their output under outputs[<name>].

What an extractor does wrong costs only the items it does it on, each failed under its name (an
error entry: the driver records its file in the ledger, its point names the extractor; the file's
other items keep their outputs):

- it raises on a batch: the batch is retried item by item, so only the bad items fail;
- it returns a payload JSON cannot hold (a set, bytes, an object of its own, NaN): that item fails,
  naming the value, instead of the write to Qdrant failing for the whole batch;
- its process dies on an item (a crash in native code, os._exit, the OOM killer): Ray restarts the
  actor and retries the batch. A crash journal, a small node-local file per actor, says which items
  were in flight when the process died: the restarted actor runs a batch holding them one item at
  a time, and an item in flight alone at a death fails instead of killing the process again. After
  MAX_DEATHS_IN_A_ROW deaths without an item finished in between, the extractor dies on everything:
  the stage fails the job, saying so, instead of restarting until the stall timeout.

A setup() that raises fails the job with one line naming the extractor (raised on the first batch:
an exception in an actor's constructor reaches the driver as Ray's long creation-task traceback).

A Serve-backed extractor (spec.extractors[].serve, see serve_backed) loads no model: its setup is
finding the deployment and checking it serves the same kind and version (refused in one line, like a
setup() that raises), and each batch goes to the deployment. A request past serve.timeoutSeconds
fails its batch's items (BatchTimedOut), without retrying them one by one.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from prism_api import ExtractorSpec
from prism_api.progress_report import Counts
from prism_pipeline import rows as R
from prism_pipeline.extractors import Extractor, Payload, Vector, build
from prism_pipeline.serve_backed import BatchTimedOut, ServeBacked

# A process that died this many times in a row, with no call returning in between, dies on
# everything: the job fails. An item that was in flight alone when the process died fails.
MAX_DEATHS_IN_A_ROW = 5
# Ray's own bounds on one actor (its defaults are infinite): a backstop for when the journal is
# lost (the actor restarted on another node) and for jobs where an extractor dies on many items.
ACTOR_MAX_RESTARTS = 100
ACTOR_MAX_TASK_RETRIES = 100

JOURNAL_DIR = Path(tempfile.gettempdir()) / "prism-crash-journal"
JOURNAL_MAX_AGE_S = 24 * 3600  # a journal not written for this long is a dead actor's: removed
_SETUP = "<setup>"


class StageFailed(Exception):
    """The extractor cannot go on (its setup() failed, its process keeps dying): fails the job. The
    message is one line; the driver finds it in Ray's error with `stage_failure`."""


def stage_failure(err: BaseException) -> str | None:
    """What an extractor stage that could not go on said, found in the error that reached the
    driver: a StageFailed (Ray wraps it in the worker's traceback), or an actor dead for good once
    Ray's restarts ran out (the actor's class names the extractor, see stage_class); else None."""
    text = str(err)
    found = re.findall(rf"{StageFailed.__name__}: (.+)", text)
    if found:
        return found[-1].strip()
    dead = re.search(r"MapBatches\(ExtractorStage\[([^\]]+)\]\)", text)
    if dead and "actor died" in text.lower():
        return (f"extractor {dead.group(1)!r}: its process died {ACTOR_MAX_RESTARTS + 1} times (Ray restarts "
                f"one actor at most {ACTOR_MAX_RESTARTS} times): it keeps crashing or being killed (native code, "
                "os._exit, the OOM killer)")
    return None


def stage_class(name: str) -> type[ExtractorStage]:
    """ExtractorStage under a name of its own: Ray names the operator and its actors after it
    (MapBatches(ExtractorStage[name])), so its logs and errors say which extractor they are about."""
    return type(f"ExtractorStage[{name}]", (ExtractorStage,), {"__module__": __name__})


class ExtractorStage:
    def __init__(self, spec: dict, progress: Any = None, where: str = "spec.extractors[?]"):
        self.name, self.kind, self.where = spec["name"], spec["kind"], where
        self.progress = progress
        # A Serve-backed stage's model runs in the deployment's replicas: no GPU time here.
        self.gpu = spec.get("resources", {}).get("gpu", 0) > 0 and not spec.get("serve")
        self.journal = CrashJournal.for_this_actor()
        # Why this stage cannot run: raised on its first batch (see the module's docstring).
        self.failure: str | None = self._crash_loop()
        if self.failure is None:
            self.failure = self._start(spec)

    def _crash_loop(self) -> str | None:
        j = self.journal
        if j.in_a_row < MAX_DEATHS_IN_A_ROW:
            return None
        where = ("while starting (in setup())" if j.last == _SETUP
                 else f"without finishing an item (the last time on {j.last})")
        return (f"extractor {self.name!r} ({self.kind}): its process died {j.in_a_row} times in a row {where}; "
                "it was killed or crashed (native code, os._exit, the OOM killer)")

    def _start(self, spec: dict) -> str | None:
        self.journal.begin([_SETUP])
        try:
            built = build(ExtractorSpec.model_validate(spec))
            if built.spec.serve is not None:
                self.extractor: Extractor | ServeBacked = ServeBacked.connect(built, self.where)
            else:
                built.setup()
                self.extractor = built
        except Exception as err:
            return f"extractor {self.name!r} ({self.kind}) failed to start: {one_line(err)}"
        finally:
            self.journal.begin([])
        output = self.extractor.output
        self.vector = output if isinstance(output, Vector) else None
        self.payload = isinstance(output, Payload)
        return None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.failure is not None:
            raise StageFailed(self.failure)
        started_wall, started_cpu = time.monotonic(), time.process_time()
        rows = R.from_batch(batch)
        chosen = [r for r in rows if r["status"] == R.ITEM and self.extractor.accepts(r)]
        failed = self._apply(chosen) if chosen else 0
        self.journal.settle([r["key"] for r in chosen])
        if self.progress is not None:
            counts = Counts(items={self.name: len(chosen) - failed}, cpu_seconds=time.process_time() - started_cpu,
                            items_failed={self.name: failed} if failed else {},
                            gpu_seconds=time.monotonic() - started_wall if self.gpu else 0.0)
            self.progress.add.remote(counts)  # fire-and-forget, once per batch
        return R.to_batch(rows) if rows else R.empty_batch()

    def _apply(self, chosen: list[dict[str, Any]]) -> int:
        """Set outputs on `chosen`; return how many items failed."""
        failed, todo = 0, []
        for row in chosen:
            if row["key"] in self.journal.died_on:
                self._fail(row, f"the extractor's process died on this item (pid {self.journal.died_on[row['key']]} "
                                "exited or was killed: a crash in native code, os._exit, the OOM killer)")
                failed += 1
            else:
                todo.append(row)
        if len(todo) > 1 and any(row["key"] in self.journal.suspects for row in todo):
            # The process died on this batch before: one item at a time, to find the one it dies on.
            return failed + sum(self._run([row]) for row in todo)
        return failed + (self._run(todo) if todo else 0)

    def _run(self, rows: list[dict[str, Any]]) -> int:
        self.journal.begin([r["key"] for r in rows])
        try:
            outputs = self._call(rows)
        except BatchTimedOut as err:  # the deployment does not answer: one by one would wait as long each
            self.journal.survived()
            for row in rows:
                self._fail(row, str(err))
            return len(rows)
        except Exception as err:
            self.journal.survived()
            if len(rows) == 1:
                self._fail(rows[0], f"{type(err).__name__}: {err}")
                return 1
            # Isolate the bad item(s): batch-mates keep their results.
            return sum(self._run([row]) for row in rows)
        self.journal.survived()
        failed = 0
        for row, value in zip(rows, outputs, strict=True):
            problem = payload_problem(value) if self.payload else None
            if problem is not None:
                self._fail(row, f"extractor {self.name!r} returned a payload JSON cannot hold: {problem}")
                failed += 1
            else:
                row["outputs"][self.name] = value
        return failed

    def _fail(self, row: dict[str, Any], reason: str) -> None:
        row["errors"].append({"stage": self.name, "error": f"{row['key']}: {reason}"})

    def _call(self, items: list[dict[str, Any]]) -> list[Any]:
        outputs = list(self.extractor(items))
        if len(outputs) != len(items):
            raise ValueError(f"extractor {self.name!r} returned {len(outputs)} outputs for {len(items)} items")
        if self.vector is not None:
            outputs = [self._check_vector(v) for v in outputs]
        return outputs

    def _check_vector(self, value: Any) -> np.ndarray:
        vec = np.asarray(value, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.vector.size:
            raise ValueError(f"extractor {self.name!r} returned a vector of size {vec.shape[0]}, "
                             f"declared {self.vector.size}")
        if not np.all(np.isfinite(vec)):
            raise ValueError(f"extractor {self.name!r} returned a vector with NaN/inf")
        return vec


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def payload_problem(value: Any, where: str = "payload") -> str | None:
    """What keeps `value` from being a JSON payload (points._plain turns numpy values into Python
    ones, and keys into strings), e.g. "payload['tags'] is a set"; None if nothing does."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}"
    if isinstance(value, np.generic):
        return payload_problem(value.item(), where)
    if isinstance(value, np.ndarray):
        return payload_problem(value.tolist(), where)
    if isinstance(value, dict):
        items = ((f"{where}[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        kind = type(value).__qualname__
        if isinstance(value, bytes | bytearray):
            return f"{where} is {kind}"
        return f"{where} is {'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"
    for path, v in items:
        problem = payload_problem(v, path)
        if problem is not None:
            return problem
    return None


class CrashJournal:
    """What this actor's process was doing, in a small node-local file that outlives the process:
    Ray restarts a dead actor under the same actor id, on the same node unless the node is gone.

    `begin(keys)` before each extractor call, `survived()` after it; a restarted actor's journal
    (loaded at construction) turns the keys still in flight into `died_on` (alone in flight: the
    item the process died on, with its pid) or `suspects` (a batch of them: run one at a time), and
    counts the death. `settle(keys)` forgets items whose batch came through."""

    def __init__(self, path: Path | None):
        self.path = path
        self.suspects: set[str] = set()
        self.died_on: dict[str, int] = {}  # key -> the pid that died on it
        self.in_a_row = 0                 # deaths with no extractor call returning in between
        self.last = ""                    # what was in flight at the last death
        self._in_flight: list[str] = []
        state = self._load()
        if state:
            self.suspects, self.died_on = set(state["suspects"]), dict(state["died_on"])
            self.in_a_row, self.last = state["in_a_row"], state["last"]
            self._died(state["in_flight"], state["pid"])

    @classmethod
    def for_this_actor(cls) -> CrashJournal:
        """The journal of the actor this runs in (in memory only outside a Ray actor)."""
        import ray

        actor_id = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None
        if not actor_id:
            return cls(None)
        _prune(JOURNAL_DIR)
        return cls(JOURNAL_DIR / f"{actor_id}.json")

    def _load(self) -> dict | None:
        if self.path is None:
            return None
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError, KeyError):
            return None

    def _died(self, in_flight: list[str], pid: int) -> None:
        if not in_flight:
            return  # it died between calls: no item to blame
        self.in_a_row += 1
        self.last = in_flight[0] if len(in_flight) == 1 else f"a batch of {len(in_flight)} items"
        if len(in_flight) == 1 and in_flight[0] != _SETUP:
            self.died_on[in_flight[0]] = pid
        else:
            self.suspects.update(k for k in in_flight if k != _SETUP)
        self._save()

    def begin(self, keys: list[str]) -> None:
        self._in_flight = keys
        self._save()

    def survived(self) -> None:
        self.in_a_row = 0
        self.begin([])

    def settle(self, keys: list[str]) -> None:
        if self.suspects or self.died_on:
            self.suspects.difference_update(keys)
            for k in keys:
                self.died_on.pop(k, None)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        state = {"in_flight": self._in_flight, "pid": os.getpid(), "suspects": sorted(self.suspects),
                 "died_on": self.died_on, "in_a_row": self.in_a_row, "last": self.last}
        try:
            if not (self._in_flight or self.suspects or self.died_on or self.in_a_row):
                self.path.unlink(missing_ok=True)  # nothing to remember: no file left behind
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.path)
        except OSError:
            self.path = None  # no journal on this node: Ray's restart bounds still hold


def _prune(folder: Path, max_age_s: float = JOURNAL_MAX_AGE_S) -> None:
    """Forget the journals of actors long gone (a job that failed leaves its dead actors' files)."""
    cutoff = time.time() - max_age_s
    try:
        for path in folder.glob("*.json"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
    except OSError:
        pass
