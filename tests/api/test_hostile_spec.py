"""Hostile specs the contract refuses wherever it is read (`prism validate`, `prism run`, the operator):
unbounded extractor options, unknown options of built-in kinds, collection names Prism keeps for itself."""

from __future__ import annotations

import time

import pytest

from prism_api import SpecError, parse_job
from prism_api.extractor_options import (
    BUILTIN_OPTIONS,
    OPTIONS_MAX_BYTES,
    OPTIONS_MAX_DEPTH,
    OPTIONS_MAX_KEYS,
    OPTIONS_MAX_VALUES,
)


def job(options=None, *, kind: str = "python: tests.pipeline.plugins:Poisoned", collection: str = "docs") -> dict:
    return {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": "hostile"},
            "spec": {"source": {"uri": "/tmp"},
                     "extractors": [{"name": "words", "kind": kind, "options": options or {}}],
                     "sink": {"qdrant": {"collection": collection}}}}


def problems(doc: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    return [str(e) for e in info.value.errors]


def billion_laughs() -> dict:
    """What a YAML alias bomb becomes in memory: shared lists (8 deep, within the depth bound), 9 ** 8
    strings once walked."""
    level: list = ["lol"] * 9
    for _ in range(7):
        level = [level] * 9
    return {"lol": level}


def test_an_alias_bomb_in_options_is_refused_without_walking_it():
    started = time.monotonic()
    assert problems(job(billion_laughs())) == [
        f"spec.extractors[0].options: holds more than {OPTIONS_MAX_VALUES} keys and values; options are settings, "
        "not data: put data in a file the extractor reads"]
    assert time.monotonic() - started < 1


def test_options_are_bounded_in_keys_depth_and_size():
    many = {f"k{i}": i for i in range(OPTIONS_MAX_KEYS + 1)}
    assert problems(job(many)) == [f"spec.extractors[0].options: must have at most {OPTIONS_MAX_KEYS} entries "
                                   f"(got {OPTIONS_MAX_KEYS + 1})"]
    deep: dict = {}
    inner = deep
    for _ in range(OPTIONS_MAX_DEPTH + 1):
        inner["x"] = {}
        inner = inner["x"]
    assert problems(job(deep)) == [f"spec.extractors[0].options: nested more than {OPTIONS_MAX_DEPTH} levels deep"]
    big = {"text": "x" * OPTIONS_MAX_BYTES}
    assert problems(job(big)) == [f"spec.extractors[0].options: {OPTIONS_MAX_BYTES + 11} bytes as JSON, more than "
                                  f"{OPTIONS_MAX_BYTES}; options are settings, not data: put data in a file the "
                                  "extractor reads"]
    recursive: dict = {"a": 1}
    recursive["self"] = recursive
    assert problems(job(recursive)) == [
        f"spec.extractors[0].options: nested more than {OPTIONS_MAX_DEPTH} levels deep"]


def test_modest_options_pass():
    labels = [f"label {i}" for i in range(200)]
    assert parse_job(job({"labels": labels, "nested": {"a": [1, 2, {"b": True}]}})).spec.extractors[0].options


def test_unknown_options_of_a_builtin_kind_are_refused_with_the_known_ones():
    assert problems(job({"minChars": 2, "minchars": 3, "langauge": "eng"}, kind="ocr")) == [
        "spec.extractors[0].options.minchars: not an option of kind ocr (its options: backend, language, "
        "minChars, minConfidence, psm, timeoutSeconds)",
        "spec.extractors[0].options.langauge: not an option of kind ocr (its options: backend, language, "
        "minChars, minConfidence, psm, timeoutSeconds)",
    ]
    # Plug-ins define their own options.
    assert parse_job(job({"anything": 1})).spec.extractors[0].options == {"anything": 1}


def test_every_builtin_kind_lists_its_options():
    from prism_api import BUILTIN_KINDS

    assert set(BUILTIN_OPTIONS) == set(BUILTIN_KINDS)


@pytest.mark.parametrize("collection", ["docs__prism_files", "a__prism", "x__prismy"])
def test_collection_names_of_prism_own_are_refused(collection):
    assert problems(job(collection=collection)) == [
        f"spec.sink.qdrant.collection: must not contain '__prism' (got '{collection}'): Prism keeps "
        "<collection>__prism_files beside each collection for its own records; choose another name"]


def test_an_error_about_a_huge_shared_value_quotes_it_briefly():
    """An unknown field holding an alias bomb is named without walking the bomb to print it."""
    doc = job()
    doc["spec"]["lol"] = billion_laughs()
    started = time.monotonic()
    [message] = problems(doc)
    assert message == "spec.lol: is not a known field; check the spelling (see `kubectl explain extractionjob.spec`)"
    doc = job()
    doc["spec"]["source"]["include"] = billion_laughs()["lol"]
    messages = problems(doc)
    assert len(messages) == 9 and messages[0].startswith("spec.source.include[0]: must be a string (got [[[[...], ")
    assert all(len(m) < 200 for m in messages)
    assert time.monotonic() - started < 1


def test_a_glob_that_does_not_compile_is_refused_by_the_contract_so_the_operator_creates_nothing():
    doc = job()
    doc["spec"]["source"] = {"uri": "s3://media/", "include": ["**/*.txt", "[z-a]*"], "exclude": ["[9-0]"]}
    doc["spec"]["sink"]["qdrant"]["url"] = "http://qdrant:6333"
    with pytest.raises(SpecError) as info:
        parse_job(doc, target="cluster")
    assert [str(e) for e in info.value.errors] == [
        "spec.source.include[1]: '[z-a]*' is not a valid glob (bad character range z-a); write a range low-high, "
        "e.g. [a-z]",
        "spec.source.exclude[0]: '[9-0]' is not a valid glob (bad character range 9-0); write a range low-high, "
        "e.g. [a-z]"]
    doc["spec"]["source"] = {"uri": "s3://media/", "include": ["**/[a-z]*.txt", "[!.]*"]}
    assert parse_job(doc, target="cluster").spec.source.include == ["**/[a-z]*.txt", "[!.]*"]
