"""The read stage on real files: the listed size, one unsupported-type message, one hash per file,
and decoded items streamed in bounded batches whose rows still let the driver complete each file."""

from __future__ import annotations

import hashlib

import pytest

from prism_api import SourceSpec
from prism_pipeline import rows as R
from prism_pipeline.ledger import FileTracker
from prism_pipeline.preprocess import DecodedFile, DecodeError, decode_file, iter_items
from prism_pipeline.preprocess.items import make_item
from prism_pipeline.read_stage import ITEMS_PER_BATCH, _item_rows, read_decode

from .conftest import preprocess, video_bytes


def run(tmp_path, files: dict[str, bytes], *, sizes: dict[str, int] | None = None, pre=None,
        **source) -> list[list[dict]]:
    """Write the files, run the read stage over their listing, return its batches as row lists."""
    listing = {"uri": [], "size": [], "prev_hash": []}
    for name, data in files.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        listing["uri"].append(str(path))
        listing["size"].append((sizes or {}).get(name, len(data or b"")))
        listing["prev_hash"].append("")
    batches = read_decode(listing, source=SourceSpec(uri=str(tmp_path), **source).model_dump(mode="json"),
                          preprocess=(pre or preprocess()).model_dump(mode="json"), per_file=[], progress=None)
    return [R.from_batch(b) for b in batches]


def track(batches: list[list[dict]], files: int) -> FileTracker:
    tracker = FileTracker(files_total=files)
    for rows in batches:
        for row in rows:
            tracker.observe(row)
    return tracker


def test_a_listed_size_over_the_limit_is_refused_before_the_fetch(tmp_path):
    # The file is not there at all: refusing it on its listed size proves nothing was fetched.
    [[row]] = run(tmp_path, {"huge.mp4": None}, sizes={"huge.mp4": 10_000}, max_file_bytes=1000)
    assert row["status"] == R.FAILED and row["bytes_read"] == 0
    assert row["errors"] == [{"stage": "read", "error": f"{tmp_path}/huge.mp4: oversized: 10000 bytes > "
                              "spec.source.maxFileBytes=1000; raise maxFileBytes or exclude the file"}]


def test_a_listing_that_understates_the_size_is_still_refused(tmp_path):
    [[row]] = run(tmp_path, {"a.txt": b"x" * 2000}, sizes={"a.txt": 10}, max_file_bytes=1000)
    assert row["status"] == R.FAILED and "oversized: 2000 bytes > spec.source.maxFileBytes=1000" in row["errors"][0]["error"]


def test_an_unsupported_extension_has_one_message_whoever_checks(tmp_path):
    [[row]] = run(tmp_path, {"archive.zip": b"PK\x03\x04"})
    with pytest.raises(DecodeError) as err:
        decode_file(row["uri"], b"PK\x03\x04", preprocess())
    assert row["errors"] == [{"stage": "decode", "error": str(err.value)}]
    assert "narrow spec.source.include" in str(err.value) and row["bytes_read"] == 0  # not fetched


def test_the_read_stage_hash_is_passed_down_to_the_items(tmp_path):
    data = b"hello world " * 20
    digest = hashlib.sha256(data).hexdigest()
    [rows] = run(tmp_path, {"a.txt": data})
    assert [r["content_hash"] for r in rows] == [digest]
    # The decoder takes the hash it is given instead of hashing the bytes again.
    assert [i["content_hash"] for i in iter_items("/a.txt", data, preprocess(), "cd" * 32)] == ["cd" * 32]


def test_a_long_video_streams_in_bounded_batches_and_completes(tmp_path):
    data = video_bytes(4.0, fps=10, audio_rate=None)
    batches = run(tmp_path, {"clip.mp4": data}, pre=preprocess(video={"framesPerSecond": 10}))
    rows = [r for b in batches for r in b]
    assert len(rows) == 40 and len(batches) == 3
    assert all(0 < len(b) <= ITEMS_PER_BATCH for b in batches)
    assert {r["file_items"] for r in rows} == {40} and {r["status"] for r in rows} == {R.ITEM}
    assert sum(r["bytes_read"] for r in rows) == len(data) and sum(r["decoded"] for r in rows) == 1
    tracker = track(batches, 1)
    assert (tracker.totals.files_done, tracker.totals.files_failed, tracker.totals.bytes_read) == (1, 0, len(data))


def test_items_are_handed_on_before_the_file_is_decoded(tmp_path):
    pulled = []

    def items():
        for item in text_items(100):
            pulled.append(item)
            yield item

    stream = _item_rows("/t.txt", "ab" * 32, 5, DecodedFile("/t.txt", 100, items()), [], per_batch=8)
    first = next(stream)
    assert len(first) == 8 and len(pulled) == 9  # one row kept back, the rest not yet decoded
    assert [len(b) for b in stream] == [8] * 11 + [4]


def test_a_damaged_tail_is_done_with_the_frames_before_the_cut(tmp_path):
    whole = video_bytes(5.0, fps=10, audio_rate=None, gop=10, faststart=True)
    batches = run(tmp_path, {"cut.mp4": whole[: int(len(whole) * 0.6)]})
    rows = [r for b in batches for r in b]
    assert 1 <= len(rows) < 5 and {r["status"] for r in rows} == {R.ITEM}
    assert {r["file_items"] for r in rows} == {len(rows)}
    tracker = track(batches, 1)
    assert (tracker.totals.files_done, tracker.totals.files_failed) == (1, 0)


def text_items(n: int):
    for i in range(n):
        yield make_item(f"/t.txt#chunk={i}", "/t.txt", "ab" * 32, "document", "text", text="x", chunk=i)


def test_a_decoder_that_delivers_less_than_it_announced_fills_the_shortfall_with_gaps():
    # A video whose index promises frames its stream cannot deliver: the gaps complete the file.
    batches = list(_item_rows("/t.txt", "ab" * 32, 5, DecodedFile("/t.txt", 5, text_items(3)), [], per_batch=4))
    rows = [r for b in batches for r in b]
    assert [r["status"] for r in rows] == [R.ITEM] * 3 + [R.GAP] * 2 and {r["file_items"] for r in rows} == {5}
    assert not any(r["errors"] for r in rows)
    tracker = track(batches, 1)
    assert (tracker.totals.files_done, tracker.totals.files_failed) == (1, 0)


def test_a_decoder_failing_part_way_fails_its_file_with_the_decode_error():
    def items():
        yield from text_items(3)
        raise DecodeError("/t.txt: broken after three")

    batches = list(_item_rows("/t.txt", "ab" * 32, 5, DecodedFile("/t.txt", 6, items()), [], per_batch=4))
    rows = [r for b in batches for r in b]
    assert [r["status"] for r in rows] == [R.ITEM] * 3 + [R.GAP] * 3
    tracker = track(batches, 1)
    assert tracker.totals.files_failed == 1 and tracker.failures[0].stage == "decode"
    assert tracker.failures[0].error == "/t.txt: broken after three"
    assert dict(tracker.totals.items_failed) == {}  # a decode failure is the file's, not an extractor's


def test_a_decoder_failing_before_its_first_item_is_one_failed_row():
    def items():
        raise DecodeError("/t.txt: nothing there")
        yield

    [[row]] = list(_item_rows("/t.txt", "ab" * 32, 5, DecodedFile("/t.txt", 2, items()), [], per_batch=4))
    assert row["status"] == R.FAILED and row["decoded"] and row["bytes_read"] == 5


def test_a_decoder_yielding_more_than_it_announced_fails_its_file():
    batches = list(_item_rows("/t.txt", "ab" * 32, 5, DecodedFile("/t.txt", 2, text_items(3)), [], per_batch=4))
    rows = [r for b in batches for r in b]
    assert [r["status"] for r in rows] == [R.ITEM] * 2  # the count each row carries stays true
    tracker = track(batches, 1)
    assert tracker.totals.files_failed == 1 and "more than the 2 items it announced" in tracker.failures[0].error
