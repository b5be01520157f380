"""Per-modality preprocessing: every file is decoded once into items (see items.ITEM_KEYS).

`iter_items` is the decoder: bytes or an open file in, a DecodedFile out, which yields the items one at a time
(a long video never holds all its frames) and says up front how many it will yield (so each item
can carry its file's item count). `decode_file` lists them, for callers that want them all.
DecodeError marks a file that cannot be used. The pipeline counts decodes and records failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from prism_api import Preprocess

from .items import ITEM_KEYS, DecodeError, Source, content_hash, make_item, time_key

__all__ = ["ITEM_KEYS", "MODALITIES", "EXTENSIONS", "DecodeError", "DecodedFile", "content_hash", "decode_file",
           "iter_items", "modality_of", "require_supported"]

MODALITIES = ("image", "video", "audio", "document")

EXTENSIONS: dict[str, str] = {
    **dict.fromkeys((".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"), "image"),
    **dict.fromkeys((".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg"), "video"),
    **dict.fromkeys((".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"), "audio"),
    **dict.fromkeys((".pdf", ".txt", ".text", ".md", ".markdown"), "document"),
}


class DecodedFile:
    """The items of one file, produced lazily, their number announced before the first.

    Each decoder fixes `count` before decoding any item: one image; a document's chunks; an audio
    track's chunks once the track is decoded; a video's planned frames (from its packet index)
    plus its audio chunks. Iteration never yields more than `count`; it can stop short when a
    video's stream breaks after some frames (a damaged tail keeps the frames before the cut), and it
    raises DecodeError if a decoder fails part-way.
    """

    def __init__(self, uri: str, count: int, items: Iterator[dict]):
        self.uri, self.count, self.produced = uri, count, 0
        self._items = items

    def __iter__(self) -> DecodedFile:
        return self

    def __next__(self) -> dict:
        item = next(self._items)
        if self.produced >= self.count:
            raise DecodeError(f"{self.uri}: the decoder yielded more than the {self.count} items it announced")
        self.produced += 1
        return item


def modality_of(uri: str) -> str | None:
    """The file's modality from its extension (case-insensitive); None when unsupported."""
    name = uri.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:].lower()) if dot > 0 else None


def require_supported(uri: str) -> str:
    """The file's modality, or DecodeError when no decoder takes its extension: the one check and
    the one message, used before a file is fetched and again before it is decoded."""
    modality = modality_of(uri)
    if modality is None:
        supported = " ".join(sorted(EXTENSIONS))
        raise DecodeError(f"{uri}: unsupported file type (supported extensions: {supported}); "
                          "narrow spec.source.include to the media you want processed")
    return modality


def decode_file(uri: str, data: bytes | BinaryIO, preprocess: Preprocess, digest: str | None = None) -> list[dict]:
    """All items of one file. Raises DecodeError for zero-byte, corrupt, truncated, unsupported or
    oversized (past a spec.preprocess bound) files, with a message that names the file."""
    return list(iter_items(uri, data, preprocess, digest))


def iter_items(uri: str, data: bytes | BinaryIO, preprocess: Preprocess, digest: str | None = None,
               thumbnails: dict | None = None) -> DecodedFile:
    """The items of `decode_file`, lazily, with their count. `data`: the file's bytes, or an open
    binary file (the read stage's), which the decoders read as they need and never whole.
    Unsupported, zero-byte and unreadable files, and files past a bound of spec.preprocess
    (audio.maxDurationSeconds, video.maxSourceFrames, image.maxPixels, document.maxPages and
    maxChars), raise here, before the first item. `digest` is the file's content hash when the
    caller has already computed it (the read stage hashes each file once, for incremental skips too).
    `thumbnails`: for a video, video.ThumbnailRequest keys whose values the decoder fills with every
    frame, shrunk, in the same pass (see video.decode_frames); untouched for other files."""
    modality = require_supported(uri)
    source = Source(data)
    if not source.size:
        raise DecodeError(f"{uri}: zero-byte file")
    digest = digest or source.hash()
    if modality == "image":
        return _image_items(uri, source, digest, preprocess)
    if modality == "video":
        return _video_items(uri, source, digest, preprocess, thumbnails)
    if modality == "audio":
        return _audio_file_items(uri, source, digest, preprocess)
    return _document_items(uri, source, digest, preprocess)


def _image_items(uri: str, source: Source, digest: str, pre: Preprocess) -> DecodedFile:
    from .image import decode_image

    with source.open() as f:
        image = decode_image(f, pre.image.max_side, uri, pre.image.max_pixels)
    return DecodedFile(uri, 1, iter([make_item(uri, uri, digest, "image", "image", image=image)]))


def _video_items(uri: str, source: Source, digest: str, pre: Preprocess, thumbnails: dict | None = None) -> DecodedFile:
    """Frames, then the audio track's chunks. Both are counted before the first frame is decoded:
    the frames from the packet index, the chunks by decoding the (far smaller) audio track first."""
    from .audio import open_container
    from .video import decode_frames, plan_frames

    container = open_container(source.open(), uri)
    try:
        has_video, has_audio = bool(container.streams.video), bool(container.streams.audio)
        if not (has_video or has_audio):
            raise DecodeError(f"{uri}: no video or audio stream")
        plan = None
        if has_video:
            plan = plan_frames(container, container.streams.video[0], pre.video.frames_per_second,
                               pre.video.max_frames, uri, pre.video.max_source_frames, pre.image.max_pixels)
        chunks, audio = 0, iter(())
        if has_audio and (pre.video.audio or not has_video):
            chunks, audio = _audio_items(uri, source, digest, "video", pre)
    except BaseException:
        container.close()
        raise

    def generate() -> Iterator[dict]:
        with container:
            if plan is not None:
                for f in decode_frames(container, container.streams.video[0], plan, pre.image.max_side, uri,
                                       thumbnails):
                    yield make_item(f"{uri}#frame={f.frame}", uri, digest, "video", "image",
                                    image=f.image, timestamp=f.timestamp, frame=f.frame)
        yield from audio

    return DecodedFile(uri, (len(plan.targets) if plan else 0) + chunks, generate())


def _audio_file_items(uri: str, source: Source, digest: str, pre: Preprocess) -> DecodedFile:
    count, items = _audio_items(uri, source, digest, "audio", pre)
    if not count:
        raise DecodeError(f"{uri}: no audio samples decoded")
    return DecodedFile(uri, count, items)


def _audio_items(uri: str, source: Source, digest: str, file_modality: str,
                 pre: Preprocess) -> tuple[int, Iterator[dict]]:
    """(chunk count, chunks): the track is decoded whole now into a temporary spool file (memory
    holds one frame); each chunk is read back from it as it is taken."""
    from .audio import chunk_bounds, open_container, spool_audio_stream

    rate = pre.audio.sample_rate
    with open_container(source.open(), uri) as container:
        if not container.streams.audio:
            raise DecodeError(f"{uri}: no audio stream")
        try:
            samples = spool_audio_stream(container, container.streams.audio[0], rate,
                                         pre.audio.max_duration_seconds, uri)
        except DecodeError as err:
            if file_modality != "video":
                raise
            raise DecodeError(f"{err}; set spec.preprocess.video.audio: false to keep only the frames") from err
    starts = chunk_bounds(len(samples), rate, pre.audio.chunk_seconds)
    if not starts:
        samples.close()
        return 0, iter(())

    def generate() -> Iterator[dict]:
        try:
            for start in starts:
                end = min(start + starts.step, len(samples))
                t0, t1 = start / rate, end / rate
                yield make_item(time_key(uri, t0, t1), uri, digest, file_modality, "audio",
                                audio=samples.read(start, end), sample_rate=rate,
                                timestamp=round(t0, 6), t_end=round(t1, 6))
        finally:
            samples.close()

    return len(starts), generate()


def _document_items(uri: str, source: Source, digest: str, pre: Preprocess) -> DecodedFile:
    """Text chunks, cut up front (text is small next to its items' share of the stream, and bounded
    by document.maxChars)."""
    from .document import chunk_text, decode_text, pdf_pages

    doc = pre.document
    size, overlap = doc.chunk_chars, doc.overlap_chars
    with source.open() as f:
        if uri.lower().endswith(".pdf"):
            chunks = [(f"{uri}#page={page}&chunk={c}", chunk, {"page": page, "chunk": c})
                      for page, text in pdf_pages(f, uri, doc.max_pages, doc.max_chars)
                      for c, chunk in enumerate(chunk_text(text, size, overlap))]
        else:
            chunks = [(f"{uri}#chunk={c}", chunk, {"chunk": c})
                      for c, chunk in enumerate(chunk_text(decode_text(f, uri, doc.max_chars), size, overlap))]
    items = (make_item(key, uri, digest, "document", "text", text=text, **position) for key, text, position in chunks)
    return DecodedFile(uri, len(chunks), items)
