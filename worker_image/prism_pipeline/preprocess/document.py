"""Documents: PDF text per page, plain text and Markdown, cut into overlapping chunks."""

from __future__ import annotations

import codecs
import io
import logging
from typing import BinaryIO

from .items import DecodeError

_PIECE = 1024 * 1024  # text is decoded this many bytes at a time

# pypdf logs every recoverable oddity of real-world PDFs at WARNING; the ledger records real failures.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def pdf_pages(data: bytes | BinaryIO, name: str, max_pages: int | None = None,
              max_chars: int | None = None) -> list[tuple[int, str]]:
    """(page number from 1, text) for every page; pages without text are kept with ''. `data`: the
    bytes or a binary file (pypdf reads it as it needs). A PDF with more than max_pages pages, or
    more than max_chars characters of text, raises DecodeError naming the bound."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DecodeError(f"{name}: the PDF is encrypted with a password; decrypt it first")
        pages = len(reader.pages)
        if max_pages is not None and pages > max_pages:
            raise DecodeError(f"{name}: PDF has more than {max_pages} pages ({pages}) "
                              f"(spec.preprocess.document.maxPages={max_pages}); raise maxPages or exclude the file")
        out, chars = [], 0
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            chars += len(text)
            if max_chars is not None and chars > max_chars:
                raise _too_long(name, max_chars)
            out.append((number, text))
        return out
    except DecodeError:
        raise
    except (PdfReadError, Exception) as err:  # pypdf also raises ValueError/KeyError/... on broken files
        raise DecodeError(f"{name}: not a readable PDF ({type(err).__name__}: {err})") from err


def decode_text(data: bytes | BinaryIO, name: str, max_chars: int | None = None) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is rejected, not guessed.
    `data`: the bytes or a binary file, decoded a piece at a time: reading stops at the first NUL
    byte (binary data) and past max_chars characters (DecodeError naming document.maxChars)."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    head = f.read(_PIECE)
    encoding = "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    decoder = codecs.getincrementaldecoder(encoding)()
    parts: list[str] = []
    chars, offset, piece = 0, 0, head
    while True:
        final = len(piece) < _PIECE
        try:
            text = decoder.decode(piece, final=final)
        except UnicodeDecodeError as err:
            at = offset + err.start - len(decoder.getstate()[0])
            raise DecodeError(f"{name}: not {encoding.upper()} text (byte {at}); save it as UTF-8") from err
        if "\x00" in text:
            raise DecodeError(f"{name}: binary data (NUL bytes) in a text file")
        chars += len(text)
        if max_chars is not None and chars > max_chars:
            raise _too_long(name, max_chars)
        parts.append(text)
        if final:
            return "".join(parts)
        offset += len(piece)
        piece = f.read(_PIECE)


def _too_long(name: str, max_chars: int) -> DecodeError:
    return DecodeError(f"{name}: document text has more than {max_chars} characters "
                       f"(spec.preprocess.document.maxChars={max_chars}); raise maxChars or exclude the file")


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
