"""Documents: PDF text per page, plain text and Markdown, cut into overlapping chunks."""

from __future__ import annotations

import io
import logging

from .items import DecodeError

# pypdf logs every recoverable oddity of real-world PDFs at WARNING; the ledger records real failures.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def pdf_pages(data: bytes, name: str) -> list[tuple[int, str]]:
    """(page number from 1, text) for every page; pages without text are kept with ''."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DecodeError(f"{name}: the PDF is encrypted with a password; decrypt it first")
        return [(number, page.extract_text() or "") for number, page in enumerate(reader.pages, start=1)]
    except DecodeError:
        raise
    except (PdfReadError, Exception) as err:  # pypdf also raises ValueError/KeyError/... on broken files
        raise DecodeError(f"{name}: not a readable PDF ({type(err).__name__}: {err})") from err


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is rejected, not guessed."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise DecodeError(f"{name}: not {encoding.upper()} text (byte {err.start}); save it as UTF-8") from err
    if "\x00" in text:
        raise DecodeError(f"{name}: binary data (NUL bytes) in a text file")
    return text


def chunk_text(text: str, chunk_chars: int, overlap_chars: int) -> list[str]:
    """Chunks of at most chunk_chars, consecutive chunks sharing about overlap_chars.

    Cuts prefer whitespace (in the last half of a chunk) so words stay whole; an overlap starts at
    a word boundary. Whitespace-only chunks are dropped.
    """
    if overlap_chars >= chunk_chars:
        raise ValueError(f"overlap_chars ({overlap_chars}) must be < chunk_chars ({chunk_chars})")
    n = len(text)
    chunks: list[str] = []
    start = _skip_space(text, 0)
    while start < n:
        end = min(start + chunk_chars, n)
        if end < n:
            cut = _last_space(text, start + chunk_chars // 2, end)
            if cut is not None:
                end = cut
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= n:
            break
        nxt = max(end - overlap_chars, start + 1)
        if nxt < end and not text[nxt - 1].isspace():
            boundary = _first_space(text, nxt, end)
            nxt = boundary if boundary is not None else nxt
        start = _skip_space(text, nxt)
    return chunks


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _last_space(text: str, lo: int, hi: int) -> int | None:
    """Index just after the last whitespace in text[lo:hi] (a cut there keeps words whole)."""
    for i in range(hi, lo, -1):
        if text[i - 1].isspace():
            return i
    return None


def _first_space(text: str, lo: int, hi: int) -> int | None:
    for i in range(lo, hi):
        if text[i].isspace():
            return i + 1
    return None
