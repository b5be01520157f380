"""Hostile input (issue 15, item 3): every decoder stops at a bound on what it decodes (audio
duration, video frames, image pixels, PDF pages, text characters) and the file lands in the ledger
with a reason naming the spec field to raise; files are streamed from where they lie, never read
whole into memory. Memory is measured as the real peak RSS of a child process (its VmHWM)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
from PIL import Image

from prism_api import SourceSpec
from prism_pipeline import rows as R
from prism_pipeline.read_stage import read_file

from ..sources.conftest import aws_env, s3_endpoint  # noqa: F401 - a real S3 server (moto)
from .conftest import make_media, preprocess, video_bytes

MiB = 1024 * 1024

# The child reads one file through the read stage (fetch, hash, decode, every row) and prints
# what the ledger would record: each row's status and the first error.
CHILD = textwrap.dedent("""
    import json, sys
    from prism_api import Preprocess, SourceSpec
    from prism_pipeline.read_stage import read_file
    uri, pre = sys.argv[1], Preprocess.model_validate(json.loads(sys.argv[2]))
    src = SourceSpec(uri=uri, maxFileBytes=int(sys.argv[3]))
    import os
    statuses, errors, items = {}, [], 0
    for rows in read_file(uri, os.path.getsize(uri), None, src, pre, []):
        for row in rows:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
            errors += [e["error"] for e in row["errors"]]
    # The peak of this process's memory since exec (VmHWM): getrusage's ru_maxrss would also count
    # the parent's pages the child had between fork and exec.
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"statuses": statuses, "errors": errors, "peak": peak}))
""")


def measured(path, pre: dict | None = None, max_file_bytes: int = 2 * 1024**3) -> tuple[dict, int]:
    """(what the read stage produced, the child's peak RSS in bytes)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(pre or {}), str(max_file_bytes)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return got, got.pop("peak")


def silent_flac(path, hours: float, rate: int = 8000) -> None:
    """Hours of silence as FLAC: a few MB on disk, gigabytes once decoded to float samples."""
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        minute = np.zeros((1, rate * 60), np.int16)
        for m in range(round(hours * 60)):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, m * rate * 60
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def six_hours(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "silence.flac"
    silent_flac(path, 6)
    assert path.stat().st_size < 8 * MiB
    return path


# --- audio: the issue's 4 MB FLAC of six hours of silence ---------------------------------------

def test_hours_of_compressed_silence_fail_on_the_duration_bound_in_bounded_memory(six_hours):
    got, peak = measured(six_hours)
    assert got["statuses"] == {R.FAILED: 1}
    [error] = got["errors"]
    assert "longer than 14400s" in error and "spec.preprocess.audio.maxDurationSeconds" in error, error
    assert peak < 600 * MiB, f"peak RSS {peak / MiB:.0f} MiB"


def test_a_long_track_within_the_bound_streams_its_chunks_in_bounded_memory(tmp_path):
    # One hour: 230 MB of samples at 16 kHz, held twice over by a decoder that keeps the track in
    # memory (about 530 MiB peak before the spool); from the spool, one chunk at a time.
    silent_flac(tmp_path / "hour.flac", 1)
    got, peak = measured(tmp_path / "hour.flac", {"audio": {"maxDurationSeconds": 3600, "chunkSeconds": 60}})
    assert got == {"statuses": {R.ITEM: 60}, "errors": []}
    assert peak < 300 * MiB, f"peak RSS {peak / MiB:.0f} MiB"


# --- streaming reads: sparse files up to the size limit are never held whole ----------------------

@pytest.mark.parametrize("name", ["big.txt", "big.mp4"])
def test_a_2_gib_file_is_hashed_and_decoded_without_holding_it(tmp_path, name):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(2 * 1024**3)  # sparse: costs no disk
    got, peak = measured(path)
    assert got["statuses"] == {R.FAILED: 1}
    assert peak < 400 * MiB, f"peak RSS {peak / MiB:.0f} MiB for a 2 GiB file"


def test_the_streamed_hash_is_the_content_hash_of_the_bytes(tmp_path):
    import hashlib

    data = os.urandom(3 * MiB + 17)
    (tmp_path / "a.txt").write_bytes(data)
    src = SourceSpec(uri=str(tmp_path))
    [[row]] = list(read_file(str(tmp_path / "a.txt"), len(data), None, src, preprocess(), []))
    assert row["content_hash"] == hashlib.sha256(data).hexdigest() and row["bytes_read"] == len(data)
    [[skipped]] = list(read_file(str(tmp_path / "a.txt"), len(data), hashlib.sha256(data).hexdigest(), src,
                                 preprocess(), []))
    assert skipped["status"] == R.SKIPPED


def test_a_remote_object_is_spooled_in_ranged_chunks(s3_endpoint, monkeypatch):  # noqa: F811
    # Chunks of 1 KiB: objects of 0, exactly 3 and 3 chunks + 1 byte (S3 answers 416 to a range
    # at the end), each read back whole, hashed as preprocess.content_hash would, cut at the limit.
    import hashlib

    import boto3

    from prism_pipeline.sources import ReadError, open_file, remote

    monkeypatch.setattr(remote, "READ_CHUNK", 1024)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="spool")
    source = SourceSpec(uri="s3://spool/", endpoint=s3_endpoint, region="us-east-1", maxFileBytes=4000)
    ranges = []
    fs = remote.filesystem("s3", source)
    assert remote.filesystem("s3", source) is fs  # the process's shared one, which open_file uses
    real_cat = fs.cat_file
    monkeypatch.setattr(fs, "cat_file", lambda path, start=None, end=None, **kw: ranges.append((start, end)) or
                        real_cat(path, start=start, end=end, **kw))
    for size in (0, 3072, 3073):
        data = os.urandom(size)
        s3.put_object(Bucket="spool", Key=f"o{size}.bin", Body=data)
        ranges.clear()
        with open_file(f"s3://spool/o{size}.bin", source) as fetched:
            assert fetched.file.read() == data and fetched.size == size
            assert fetched.digest == hashlib.sha256(data).hexdigest()
        assert all(end - start <= 1024 for start, end in ranges) and len(ranges) >= size // 1024
    s3.put_object(Bucket="spool", Key="big.bin", Body=b"x" * 5000)
    with pytest.raises(ReadError, match="oversized: at least 4001 bytes > spec.source.maxFileBytes=4000"):
        open_file("s3://spool/big.bin", source)


# --- one bound per decoder, each naming its field -------------------------------------------------

def failed(tmp_path, name: str, data: bytes, pre) -> str:
    (tmp_path / name).write_bytes(data)
    batches = list(read_file(str(tmp_path / name), len(data), None, SourceSpec(uri=str(tmp_path)), pre, []))
    [[row]] = batches
    assert row["status"] == R.FAILED, row
    [error] = row["errors"]
    assert error["stage"] == "decode"
    return error["error"]


def test_audio_over_max_duration(tmp_path):
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000 * 20), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
    error = failed(tmp_path, "a.wav", buf.getvalue(), preprocess(audio={"maxDurationSeconds": 10}))
    assert "longer than 10s" in error and "spec.preprocess.audio.maxDurationSeconds" in error


def test_video_over_max_source_frames(tmp_path):
    data = video_bytes(3.0, fps=10, audio_rate=None)
    error = failed(tmp_path, "v.mp4", data, preprocess(video={"maxSourceFrames": 20}))
    assert "more than 20 frames" in error and "spec.preprocess.video.maxSourceFrames" in error
    ok = list(read_file(str(tmp_path / "v.mp4"), len(data), None, SourceSpec(uri=str(tmp_path)),
                        preprocess(video={"maxSourceFrames": 30}), []))
    assert {row["status"] for rows in ok for row in rows} == {R.ITEM}


def test_video_frames_over_max_pixels(tmp_path):
    data = video_bytes(1.0, fps=5, size=(320, 240), audio_rate=None)
    error = failed(tmp_path, "v.mp4", data, preprocess(image={"maxPixels": 320 * 240 - 1}))
    assert "320x240" in error and "spec.preprocess.image.maxPixels" in error


def test_image_over_max_pixels(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(buf, "PNG")
    error = failed(tmp_path, "i.png", buf.getvalue(), preprocess(image={"maxPixels": 400 * 300 - 1}))
    assert "400x300" in error and "spec.preprocess.image.maxPixels" in error
    ok = list(read_file(str(tmp_path / "i.png"), len(buf.getvalue()), None, SourceSpec(uri=str(tmp_path)),
                        preprocess(image={"maxPixels": 400 * 300}), []))
    assert [row["status"] for rows in ok for row in rows] == [R.ITEM]


def test_pdf_over_max_pages(tmp_path):
    data = make_media().pdf([[f"Page {n} text."] for n in range(1, 6)])
    error = failed(tmp_path, "d.pdf", data, preprocess(document={"maxPages": 4}))
    assert "more than 4 pages" in error and "spec.preprocess.document.maxPages" in error


def test_text_over_max_chars(tmp_path):
    data = ("word " * 30_000).encode()
    error = failed(tmp_path, "d.txt", data, preprocess(document={"maxChars": 100_000}))
    assert "more than 100000 characters" in error and "spec.preprocess.document.maxChars" in error


def test_pdf_text_over_max_chars(tmp_path):
    data = make_media().pdf([["lava " * 200]] * 3)
    error = failed(tmp_path, "d.pdf", data, preprocess(document={"maxChars": 1500}))
    assert "more than 1500 characters" in error and "spec.preprocess.document.maxChars" in error


def test_the_bounds_have_defaults_and_limits():
    pre = preprocess()
    assert pre.audio.max_duration_seconds == 14400
    assert pre.video.max_source_frames == 1_000_000
    assert pre.image.max_pixels == 178_956_970
    assert pre.document.max_pages == 5000 and pre.document.max_chars == 20_000_000
    with pytest.raises(ValueError):
        preprocess(audio={"maxDurationSeconds": 0})



def test_raising_a_bound_does_not_make_an_incremental_run_redo_finished_files():
    # A bound only fails a file whole; the points of a file within it are the same whatever it is.
    from prism_api import ExtractionJobSpec
    from prism_pipeline import incremental

    def key(**preprocess) -> str:
        spec = ExtractionJobSpec.model_validate({
            "source": {"uri": "/m"}, "extractors": [{"name": "text", "kind": "text-embedding"}],
            "sink": {"qdrant": {"collection": "c"}}, "preprocess": preprocess})
        return incremental.run_key(spec, [])

    base = key()
    assert base == key(audio={"maxDurationSeconds": 86400}, video={"maxSourceFrames": 5},
                       image={"maxPixels": 10**9}, document={"maxPages": 1, "maxChars": 10**8})
    assert base != key(audio={"chunkSeconds": 10}) and base != key(document={"chunkChars": 1000})
    # The settings that shape points are the ones there were before the bounds existed.
    assert preprocess().point_settings() == {
        "video": {"framesPerSecond": 1.0, "maxFrames": 600, "audio": True}, "image": {"maxSide": 1024},
        "audio": {"sampleRate": 16000, "chunkSeconds": 30.0}, "document": {"chunkChars": 1500, "overlapChars": 200}}
