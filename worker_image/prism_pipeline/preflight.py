"""What `prism run` would fail on, found before Ray starts (`prism run` and `prism validate --for local`).

The contract (prism_api) has already accepted the manifest; this checks it against this machine:
every extractor builds (plug-in importable, options of the right type, model resolvable, binaries
and their data present), a Serve-backed extractor has a cluster to call (RAY_ADDRESS), the globs compile, a local source exists (an include or exclude that matches
no file is a warning), the pools' minimum sizes fit the machine, and the job is not suspended.
Each problem is one Finding naming the field and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prism_api import ExtractionJobSpec

# `prism run` starts Ray with max(cores, cpus_needed) CPUs: beyond this factor of the real cores the
# pools' minimum actors thrash the machine (min 10 on 2 cores took 5.5 GB and 122 s for 4 files).
CPU_OVERCOMMIT = 4
# Actors beyond the first of each pool, per core.
EXTRA_ACTORS_PER_CORE = 2


@dataclass(frozen=True)
class Finding:
    path: str      # the field, e.g. spec.extractors[0].kind
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{'warning: ' if self.warning else ''}{self.path}: {self.message}"


def check_local(spec: ExtractionJobSpec, *, cores: int | None = None) -> list[Finding]:
    """Errors and warnings for running `spec` on this machine with `prism run`."""
    findings: list[Finding] = []
    if spec.suspend:
        findings.append(Finding("spec.suspend", "is true, and `prism run` does not run a suspended job; remove "
                                "spec.suspend (or set it to false) to run it"))
    built = _extractors(spec, findings)
    findings += _served(spec)
    findings += _source(spec)
    if built and not os.environ.get("RAY_ADDRESS"):
        findings += _pools(spec, cores or os.cpu_count() or 1)
    return findings


def _extractors(spec: ExtractionJobSpec, findings: list[Finding]) -> bool:
    """Build each extractor as the driver will; True when all of them built."""
    from prism_pipeline.extractors import ExtractorError, build
    from prism_pipeline.model_uris import ModelError

    ok = True
    for i, ex_spec in enumerate(spec.extractors):
        where = f"spec.extractors[{i}]"
        try:
            extractor = build(ex_spec, where)
            extractor.preflight()
        except ExtractorError as err:
            path, _, message = str(err).partition(": ")
            findings.append(Finding(path, message))
            ok = False
        except (ValueError, TypeError, ModelError, OSError) as err:
            findings.append(Finding(where, str(err)))
            ok = False
        except Exception as err:  # noqa: BLE001 - a plug-in's constructor may raise anything
            if not ex_spec.plugin_path:
                raise
            findings.append(Finding(where, f"plug-in {ex_spec.plugin_path} failed to start: "
                                    f"{type(err).__name__}: {err}"))
            ok = False
    return ok


def _served(spec: ExtractionJobSpec) -> list[Finding]:
    """Serve-backed extractors call a deployment on a running Ray cluster: `prism run` must connect to
    it (RAY_ADDRESS) instead of starting a Ray of its own, where no deployment runs. Whether the
    deployment exists, and serves the same model version, the run checks once connected."""
    if os.environ.get("RAY_ADDRESS") or _connected():
        return []
    return [Finding(f"spec.extractors[{i}].serve",
                    f"names Serve deployment {e.serve.app}/{e.serve.deployment}, which only a running Ray cluster "
                    "serves, but RAY_ADDRESS is not set (`prism run` would start a Ray of its own, without it); "
                    "set RAY_ADDRESS to the Ray cluster running the service (`prism serve` prints it and records it in "
                    "<state dir>/serve/<collection>.json; with a local Ray also set RAY_AUTH_MODE=token; a "
                    "SearchService's cluster on Kubernetes), or remove serve "
                    "to load the model in the job")
            for i, e in enumerate(spec.extractors) if e.serve is not None]


def _connected() -> bool:
    """This process is already connected to a Ray cluster (a test's or a notebook's session)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def _source(spec: ExtractionJobSpec) -> list[Finding]:
    from prism_api.globs import glob_regex
    from prism_pipeline.sources import SourceError, split_uri
    from prism_pipeline.sources.local_files import list_local

    source = spec.source
    findings: list[Finding] = []
    # The spec's validation (prism_api.job_spec.Glob) has refused globs that do not compile.
    compiled = {field: [glob_regex(p) for p in getattr(source, field)] for field in ("include", "exclude")}
    try:
        scheme, root = split_uri(source.uri)
    except SourceError as err:
        return [*findings, Finding("spec.source.uri", str(err).partition(": ")[2] or str(err))]
    if scheme is not None:  # a remote listing costs requests and credentials: the run does it
        return findings
    try:
        refs = list_local(root, source.uri, lambda rel: True)
    except SourceError as err:
        return [*findings, Finding("spec.source.uri", str(err).partition(": ")[2] or str(err))]
    rels = [os.path.basename(root) if os.path.isfile(root) else os.path.relpath(r.uri, root).replace(os.sep, "/")
            for r in refs]
    for field in ("include", "exclude"):
        for i, regex in enumerate(compiled[field]):
            if not any(regex.match(rel) for rel in rels):
                findings.append(Finding(f"spec.source.{field}[{i}]",
                                        f"{getattr(source, field)[i]!r} matches no file under {root}", warning=True))
    includes, excludes = compiled["include"], compiled["exclude"]
    chosen = [rel for rel in rels if any(r.match(rel) for r in includes) and not any(r.match(rel) for r in excludes)]
    if rels and not chosen and not any(f.path.startswith("spec.source.include") for f in findings):
        findings.append(Finding("spec.source", f"include and exclude leave no file under {root}: the job would "
                                "process nothing", warning=True))
    if not rels:
        findings.append(Finding("spec.source.uri", f"{root} holds no file: the job would process nothing",
                                warning=True))
    return findings


def _pools(spec: ExtractionJobSpec, cores: int) -> list[Finding]:
    """The pools' minimum actors against this machine's cores."""
    from prism_pipeline.extractors import extractor_class

    pooled = [i for i, e in enumerate(spec.extractors) if not extractor_class(e, f"spec.extractors[{i}]").per_file]
    if not pooled or _fits(spec, pooled, cores):
        return []
    i = max(pooled, key=lambda j: (spec.extractors[j].concurrency.min * spec.extractors[j].resources.cpu,
                                   spec.extractors[j].concurrency.min))
    worst = spec.extractors[i]
    fits = next((m for m in range(worst.concurrency.min - 1, 0, -1)
                 if _fits(_with_min(spec, i, m), pooled, cores)), None)
    lower = (f"lower concurrency.min to {fits} or less" if fits else
             "lower concurrency.min and resources.cpu of the extractors, or run it on a cluster")
    return [Finding(
        f"spec.extractors[{i}].concurrency.min",
        f"{worst.concurrency.min} actors of extractor {worst.name!r} need {worst.concurrency.min * worst.resources.cpu:g} "
        f"CPUs (all pools' minimums: {sum(spec.extractors[j].concurrency.min for j in pooled)} actors, "
        f"{_cpus(spec)} CPUs) but this machine has {cores} cores; {lower} (a pool grows towards concurrency.max "
        "on its own)")]


def _cpus(spec: ExtractionJobSpec) -> int:
    from prism_pipeline.runner import cpus_needed

    return cpus_needed(spec)


def _fits(spec: ExtractionJobSpec, pooled: list[int], cores: int) -> bool:
    extra_actors = sum(spec.extractors[j].concurrency.min - 1 for j in pooled)
    return _cpus(spec) <= CPU_OVERCOMMIT * cores and extra_actors <= EXTRA_ACTORS_PER_CORE * cores


def _with_min(spec: ExtractionJobSpec, index: int, minimum: int) -> ExtractionJobSpec:
    extractors = list(spec.extractors)
    ex = extractors[index]
    extractors[index] = ex.model_copy(update={"concurrency": ex.concurrency.model_copy(update={"min": minimum})})
    return spec.model_copy(update={"extractors": extractors})
