"""The registry answers class questions (per_file) without constructing an extractor."""

from __future__ import annotations

import pytest

from prism_api import ExtractionJobSpec
from prism_pipeline.extractors import Extractor, ExtractorError, Payload, extractor_class
from prism_pipeline.runner import cpus_needed


class NeverBuilt(Extractor):
    """A pool extractor whose construction fails, as one with a model missing on the driver would."""

    modalities = frozenset({"text"})
    output = Payload()

    def __init__(self, spec):
        raise AssertionError("constructed")


class NeverBuiltPerFile(NeverBuilt):
    per_file = True


def job(*extractors: dict) -> ExtractionJobSpec:
    return ExtractionJobSpec.model_validate({"source": {"uri": "/data"}, "extractors": list(extractors),
                                             "sink": {"qdrant": {"collection": "c"}}})


PLUGIN = "python: tests.extractors.test_extractor_class:"


def test_cpus_needed_reads_per_file_from_the_class_without_building():
    spec = job({"name": "pool", "kind": PLUGIN + "NeverBuilt", "resources": {"cpu": 2},
                "concurrency": {"min": 2, "max": 4}},
               {"name": "seq", "kind": PLUGIN + "NeverBuiltPerFile", "resources": {"cpu": 8}})
    assert cpus_needed(spec) == 6  # 2 x 2 for the pool, one read task, half for the sink: per-file adds none


def test_extractor_class_resolves_builtins_and_names_the_field():
    assert extractor_class(job({"name": "shots", "kind": "shot-boundary"}).extractors[0]).per_file
    assert not extractor_class(job({"name": "t", "kind": "text-embedding"}).extractors[0]).per_file
    with pytest.raises(ExtractorError, match=r"spec\.extractors\[3\]\.kind: cannot import plug-in module"):
        extractor_class(job({"name": "x", "kind": "python: no_such_module:X"}).extractors[0], "spec.extractors[3]")
