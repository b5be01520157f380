"""Issue 15 (hostile input), day-one rough edges of the `prism` command: bad flags and queries are
refused with one message (exit 2, no traceback), `--version`, search tables that survive hostile
file names, relative paths and `--json`, a read-only store, the whole failure reason in the summary,
and `prism operator` without cluster credentials. Each runs the console script as a user does."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"


def prism(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PRISM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def one_message(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, no traceback, and the message names every needle."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# -- flags and queries ---------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["70000", "0", "-1", "65536"])
def test_a_progress_port_out_of_range_is_refused_before_ray_starts(port):
    result = prism("run", "examples/minimal.yaml", "--progress-port", port)
    one_message(result, "--progress-port", "1-65535", port)


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_search_limit_below_one_is_refused(limit, tmp_path):
    result = prism("search", "honey", "--collection", "docs", "--state-dir", str(tmp_path), "--limit", limit)
    one_message(result, "--limit", "at least 1", limit)


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_failed_limit_below_one_is_refused(limit, tmp_path):
    result = prism("failed", "--collection", "docs", "--state-dir", str(tmp_path), "--limit", limit)
    one_message(result, "--limit", "at least 1", limit)


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_an_empty_query_is_refused(query, tmp_path):
    result = prism("search", query, "--collection", "docs", "--state-dir", str(tmp_path))
    one_message(result, "empty query")


def test_version_names_the_installed_distribution():
    result = prism("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"prism {importlib.metadata.version('prism-extract')}\n"


# -- the search table -----------------------------------------------------------------------------------

HOSTILE = {
    "new\nline.txt": "Honeybees collect nectar from flowers and turn it into honey inside the hive.",
    "tab\there.txt": "A volcano erupts molten lava,\nash and gases from deep under the crust.",
    "sharp#1.txt": "Whales are large mammals that swim in the deep ocean and breathe air.",
}


def hostile_store(state: Path, folder: str) -> None:
    """An embedded store holding HOSTILE's documents as if listed under `folder`."""
    from prism_api import QdrantSink
    from prism_pipeline.sink import Sink
    from prism_pipeline.sink.embedded import close_embedded
    from tests.pipeline.stores import item_rows, outcomes, text_extractor

    extractors = [text_extractor()]
    sink = Sink(QdrantSink(collection="docs", batch_size=2), extractors, state)
    try:
        sink.prepare()
        sink.write(outcomes(item_rows(HOSTILE, folder=folder), extractors))
    finally:
        sink.close()
        close_embedded(state)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """(cwd, state dir): the documents' uris are absolute paths under cwd/media, as `prism run` writes them."""
    cwd = tmp_path_factory.mktemp("cwd")
    hostile_store(cwd / "state", folder=str(cwd / "media"))
    return cwd, cwd / "state"


def test_hostile_file_names_keep_one_row_each_with_escaped_cells(hostile):
    cwd, state = hostile
    result = prism("search", "honey whales lava", "--collection", "docs", "--state-dir", str(state),
                   "--limit", "3", cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout  # the header and one line per hit
    rows = {line.split()[1]: line.split()[2] for line in lines[1:]}
    # relative to the current directory (as the README shows), control characters escaped, `#` kept
    assert rows == {r"media/new\nline.txt": "chunk=0", r"media/tab\there.txt": "chunk=0",
                    "media/sharp#1.txt": "chunk=0"}


def test_json_output_keeps_full_uris_and_every_field(hostile):
    cwd, state = hostile
    result = prism("search", "whales in the ocean", "--collection", "docs", "--state-dir", str(state),
                   "--limit", "2", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    best = hits[0]
    uri = str(cwd / "media" / "sharp#1.txt")
    assert best == {"query": "whales in the ocean", "score": best["score"], "uri": uri, "key": f"{uri}#chunk=0",
                    "item": "chunk=0", "at": None, "page": None, "text": HOSTILE["sharp#1.txt"],
                    "failed_extractors": [], "vector": "text"}


def test_a_file_uri_under_the_current_directory_is_shown_relative(tmp_path):
    from prism_cli.cmd_search import display_uri

    here = Path.cwd()
    assert display_uri(f"file://{here}/media/a.txt") == "media/a.txt"
    assert display_uri(str(here / "media" / "a.txt")) == "media/a.txt"
    assert display_uri("file:///elsewhere/a.txt") == "file:///elsewhere/a.txt"
    assert display_uri("s3://bucket/a.txt") == "s3://bucket/a.txt"


def test_search_on_a_read_only_store(hostile, tmp_path):
    """The state dir on a read-only mount (a mounted volume, another user's store): the embedded
    store's lock file cannot be opened for writing; search still answers and changes nothing."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a read-only bind mount")
    _, state = hostile
    ro = tmp_path / "ro"
    shutil.copytree(state, ro)
    before = {p: p.stat().st_mtime_ns for p in ro.rglob("*")}
    script = (f'mount --bind "{ro}" "{ro}" && mount -o remount,bind,ro "{ro}" || exit 99; '
              f'exec "{PRISM}" search honey --collection docs --limit 1 --state-dir "{ro}"')
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    if result.returncode == 99:
        pytest.skip(f"no read-only bind mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "new\\nline.txt" in result.stdout.splitlines()[1]
    assert {p: p.stat().st_mtime_ns for p in ro.rglob("*")} == before


# -- the summary's failure table ----------------------------------------------------------------------

def test_the_failure_table_shows_the_whole_reason():
    from prism_pipeline import rows as R
    from prism_pipeline.console import summary
    from prism_pipeline.ledger import FileTracker
    from prism_pipeline.pipeline import JobResult

    reason = ("not a readable image (OSError: image file is truncated (63 bytes not processed)); "
              "the file was cut short while copying, copy it again or exclude it with spec.source.exclude")
    assert len(reason) > 150
    tracker = FileTracker(files_total=1)
    tracker.observe({"uri": "/m/a.jpg", "status": R.FAILED, "errors": [{"stage": "decode", "error": f"/m/a.jpg: {reason}"}]})
    text = summary(JobResult(name="j", ok=False, message="too many failed", tracker=tracker, wall_s=1.0,
                             collection="c", extractors=[]))
    table = text.split("REASON", 1)[1].split("- /m/a.jpg", 1)[0]
    assert " ".join(table.split()) == f"decode 1 {reason}"
    assert all(len(line) <= 120 for line in text.splitlines()), text


def test_a_very_long_reason_is_bounded():
    from prism_pipeline import rows as R
    from prism_pipeline.console import summary
    from prism_pipeline.ledger import FileTracker
    from prism_pipeline.pipeline import JobResult

    tracker = FileTracker(files_total=1)
    tracker.observe({"uri": "/m/a.jpg", "status": R.FAILED, "errors": [{"stage": "decode", "error": "x" * 5000}]})
    text = summary(JobResult(name="j", ok=False, message="m", tracker=tracker, wall_s=1.0, collection="c",
                             extractors=[]))
    table = "".join(text.split("REASON", 1)[1].split("- /m/a.jpg", 1)[0].split()[2:])
    assert table.endswith("...") and 200 <= len(table) <= 400


# -- the operator without a cluster -------------------------------------------------------------------

def test_operator_without_cluster_credentials_exits_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k != "KUBECONFIG" and not k.startswith("KUBERNETES_") and not k.startswith("PRISM_")}
    env["HOME"] = str(tmp_path)
    try:
        result = prism("operator", "--liveness", "none", env=env, timeout=60)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"prism operator kept retrying without credentials: {err.stderr!r}")
    one_message(result, "KUBECONFIG", "~/.kube/config", "in-cluster")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_prism_failed_keeps_one_row_per_item_for_hostile_file_names(tmp_path):
    from prism_api import QdrantSink
    from prism_pipeline.extractors import build
    from prism_pipeline.sink import Sink
    from prism_pipeline.sink.embedded import close_embedded
    from tests.pipeline.stores import item_rows, outcomes, text_extractor
    from tests.pipeline.test_partial_results import digest

    rows = item_rows(HOSTILE, folder=str(tmp_path / "media"))
    for r in rows:
        if "txt" in r["uri"] and "tab" not in r["uri"]:
            r["errors"].append({"stage": "digest", "error": "ValueError: cannot\ndigest\tpoison"})
        else:
            r["outputs"]["digest"] = {"chars": len(r["text"])}
    extractors = [text_extractor(), build(digest())]
    with Sink(QdrantSink(collection="docs", batch_size=2), extractors, tmp_path / "state") as sink:
        sink.prepare()
        sink.write(outcomes(rows, extractors))
    close_embedded(tmp_path / "state")
    result = prism("failed", "--collection", "docs", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout  # header, two items, the count
    assert sorted(line.split()[:3] for line in lines[1:3]) == [
        [r"media/new\nline.txt", "chunk=0", "digest"], ["media/sharp#1.txt", "chunk=0", "digest"]]
