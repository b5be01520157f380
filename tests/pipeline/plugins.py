"""Plug-in extractors used by the pipeline tests (loaded as `python: tests.pipeline.plugins:...`)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from prism_pipeline.extractors import Extractor, Payload


class Poisoned(Extractor):
    """Counts characters; raises on any text containing 'poison', like a model choking on one input."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        for item in items:
            if "poison" in (item["text"] or ""):
                raise ValueError("cannot digest poison")
        return [{"chars": len(item["text"])} for item in items]


class PoisonedUntilCured(Poisoned):
    """Poisoned, until the file named by options.antidote exists: a model fixed between two runs.
    Where the antidote lies does not change its outputs, so it stays out of the fingerprint, and
    incremental runs skip the files it once digested."""

    def __call__(self, items):
        if Path(self.options["antidote"]).exists():
            return [{"chars": len(item["text"])} for item in items]
        return super().__call__(items)

    def fingerprint(self) -> str:
        options = {k: v for k, v in self.options.items() if k != "antidote"}
        return hashlib.sha256(json.dumps([self.spec.kind, self.version, options], sort_keys=True).encode()).hexdigest()


class Hang(Extractor):
    """Never returns: a stuck model call."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        time.sleep(3600)
        return [{} for _ in items]


class DiesOn(Extractor):
    """Counts characters; its process dies on any text containing options.word ("poison"; "" is in
    every text): a native crash (options.how "exit": os._exit(1)) or the OOM killer ("kill": SIGKILL)."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        import os
        import signal

        word = self.options.get("word", "poison")
        for item in items:
            if word in (item["text"] or ""):
                if self.options.get("how", "exit") == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(1)
        return [{"chars": len(item["text"])} for item in items]


class Opaque:
    """Not JSON: a model's own result object."""


BAD_PAYLOADS = {"set": lambda: {"tags": {"a", "b"}}, "object": lambda: {"result": Opaque()},
                "bytes": lambda: {"raw": b"\x00\x01"}, "nan": lambda: {"score": float("nan")}}


class BadPayload(Extractor):
    """Counts characters; on text containing 'poison' returns a payload JSON cannot hold
    (options.bad: set, object, bytes or nan)."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        bad = BAD_PAYLOADS[self.options.get("bad", "set")]
        return [bad() if "poison" in (item["text"] or "") else {"chars": len(item["text"])} for item in items]


class BrokenSetup(Extractor):
    """A model that cannot load: setup() raises in every actor."""

    modalities = frozenset({"text"})
    output = Payload()

    def setup(self):
        raise ValueError("no weights at /models/missing")

    def __call__(self, items):
        return [{} for _ in items]


class Slow(Extractor):
    """Counts characters, options.seconds (default 0.3) per item: a model slow enough to interrupt.
    Raises on text containing 'poison', like Poisoned. Its pace is not part of its fingerprint (the
    outputs are the same), so a faster run skips what a slow one recorded."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        for item in items:
            time.sleep(float(self.options.get("seconds", 0.3)))
            if "poison" in (item["text"] or ""):
                raise ValueError("cannot digest poison")
        return [{"chars": len(item["text"])} for item in items]

    def fingerprint(self) -> str:
        options = {k: v for k, v in self.options.items() if k != "seconds"}
        return hashlib.sha256(json.dumps([self.spec.kind, self.version, options], sort_keys=True).encode()).hexdigest()


class BadFingerprint(Poisoned):
    """A plug-in with a bug the driver meets: fingerprint() raises."""

    def fingerprint(self) -> str:
        raise RuntimeError("bug in the plug-in's fingerprint")


class BadPayloadPerFile(BadPayload):
    """BadPayload run on each whole file inside the read task (a sequence extractor)."""

    per_file = True
