"""Per-modality preprocessing: every file is decoded once into items (see items.ITEM_KEYS).

`decode_file` is pure: bytes in, items out, DecodeError for a file that cannot be used. The
pipeline counts decodes and records failures itself. `iter_items` yields the same items one at a
time, so a long video need not hold all its frames at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from prism_api import Preprocess

from .items import ITEM_KEYS, DecodeError, content_hash, make_item, time_key

__all__ = ["ITEM_KEYS", "MODALITIES", "EXTENSIONS", "DecodeError", "decode_file", "iter_items", "modality_of"]

MODALITIES = ("image", "video", "audio", "document")

EXTENSIONS: dict[str, str] = {
    **dict.fromkeys((".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"), "image"),
    **dict.fromkeys((".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg"), "video"),
    **dict.fromkeys((".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"), "audio"),
    **dict.fromkeys((".pdf", ".txt", ".text", ".md", ".markdown"), "document"),
}


def modality_of(uri: str) -> str | None:
    """The file's modality from its extension (case-insensitive); None when unsupported."""
    name = uri.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:].lower()) if dot > 0 else None


def decode_file(uri: str, data: bytes, preprocess: Preprocess) -> list[dict]:
    """All items of one file. Raises DecodeError for zero-byte, corrupt, truncated or
    unsupported files, with a message that names the file."""
    return list(iter_items(uri, data, preprocess))


def iter_items(uri: str, data: bytes, preprocess: Preprocess) -> Iterator[dict]:
    """The items of `decode_file`, lazily. Unsupported, zero-byte and unreadable files raise before
    the first item; a file that breaks later (e.g. a video's audio track) raises after some."""
    modality = modality_of(uri)
    if modality is None:
        supported = " ".join(sorted(EXTENSIONS))
        raise DecodeError(f"{uri}: unsupported file type; supported extensions: {supported} "
                          "(narrow spec.source.include to skip others)")
    if not data:
        raise DecodeError(f"{uri}: zero-byte file")
    digest = content_hash(data)
    if modality == "image":
        return iter(_image_items(uri, data, digest, preprocess))
    if modality == "video":
        return _video_items(uri, data, digest, preprocess)
    if modality == "audio":
        return iter(_audio_file_items(uri, data, digest, preprocess))
    return iter(_document_items(uri, data, digest, preprocess))


def _image_items(uri: str, data: bytes, digest: str, pre: Preprocess) -> list[dict]:
    from .image import decode_image

    image = decode_image(data, pre.image.max_side, uri)
    return [make_item(uri, uri, digest, "image", "image", image=image)]


def _video_items(uri: str, data: bytes, digest: str, pre: Preprocess) -> Iterator[dict]:
    from .audio import open_container
    from .video import sample_frames

    container = open_container(data, uri)  # raises here, before the generator starts
    has_video, has_audio = bool(container.streams.video), bool(container.streams.audio)
    if not (has_video or has_audio):
        container.close()
        raise DecodeError(f"{uri}: no video or audio stream")

    def generate() -> Iterator[dict]:
        with container:
            if has_video:
                for f in sample_frames(container, container.streams.video[0], pre.video.frames_per_second,
                                       pre.video.max_frames, pre.image.max_side, uri):
                    yield make_item(f"{uri}#frame={f.frame}", uri, digest, "video", "image",
                                    image=f.image, timestamp=f.timestamp, frame=f.frame)
        if has_audio and (pre.video.audio or not has_video):
            yield from _audio_items(uri, data, digest, "video", pre)

    return generate()


def _audio_file_items(uri: str, data: bytes, digest: str, pre: Preprocess) -> list[dict]:
    items = _audio_items(uri, data, digest, "audio", pre)
    if not items:
        raise DecodeError(f"{uri}: no audio samples decoded")
    return items


def _audio_items(uri: str, data: bytes, digest: str, file_modality: str, pre: Preprocess) -> list[dict]:
    from .audio import chunk_bounds, decode_audio_stream, open_container

    rate = pre.audio.sample_rate
    with open_container(data, uri) as container:
        if not container.streams.audio:
            raise DecodeError(f"{uri}: no audio stream")
        try:
            samples = decode_audio_stream(container, container.streams.audio[0], rate, uri)
        except DecodeError as err:
            if file_modality != "video":
                raise
            raise DecodeError(f"{err}; set spec.preprocess.video.audio: false to keep only the frames") from err
    items = []
    for start, end in chunk_bounds(len(samples), rate, pre.audio.chunk_seconds):
        t0, t1 = start / rate, end / rate
        items.append(make_item(time_key(uri, t0, t1), uri, digest, file_modality, "audio",
                               audio=samples[start:end].copy(), sample_rate=rate,
                               timestamp=round(t0, 6), t_end=round(t1, 6)))
    return items


def _document_items(uri: str, data: bytes, digest: str, pre: Preprocess) -> list[dict]:
    from .document import chunk_text, decode_text, pdf_pages

    size, overlap = pre.document.chunk_chars, pre.document.overlap_chars
    items = []
    if uri.lower().endswith(".pdf"):
        for page, text in pdf_pages(data, uri):
            for c, chunk in enumerate(chunk_text(text, size, overlap)):
                items.append(make_item(f"{uri}#page={page}&chunk={c}", uri, digest, "document", "text",
                                       text=chunk, page=page, chunk=c))
        return items
    for c, chunk in enumerate(chunk_text(decode_text(data, uri), size, overlap)):
        items.append(make_item(f"{uri}#chunk={c}", uri, digest, "document", "text", text=chunk, chunk=c))
    return items
