import pytest

from prism_pipeline.preprocess import DecodeError, decode_file
from prism_pipeline.preprocess.document import chunk_text

from .conftest import make_media, preprocess

WORDS = " ".join(f"w{i:04d}" for i in range(1000))  # 5999 characters of distinct words


def test_chunks_respect_size_overlap_and_word_boundaries():
    chunks = chunk_text(WORDS, 500, 100)
    assert len(chunks) > 10
    assert all(0 < len(c) <= 500 for c in chunks)
    words = set(WORDS.split())
    for chunk in chunks:
        assert set(chunk.split()) <= words  # no word was cut in two
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = set(a.split()) & set(b.split())
        assert 70 <= sum(len(w) + 1 for w in shared) <= 100  # about overlap_chars, whole words
        assert a.split()[-len(shared):] == b.split()[:len(shared)]  # the tail of a starts b
    covered = [w for c in chunks for w in c.split()]
    assert sorted(set(covered)) == sorted(words)  # nothing lost


def test_no_overlap_gives_a_partition():
    chunks = chunk_text(WORDS, 500, 0)
    assert " ".join(chunks).split() == WORDS.split()


def test_no_empty_chunks_and_long_words_are_cut():
    assert chunk_text("   \n\n  ", 100, 10) == []
    chunks = chunk_text("x" * 250 + "   " + "y" * 10, 100, 20)
    assert all(c.strip() for c in chunks)
    assert all(len(c) <= 100 for c in chunks)
    assert chunks[-1].endswith("y" * 10)


def test_text_and_markdown_items_have_chunk_keys():
    pre = preprocess(document={"chunkChars": 500, "overlapChars": 100})
    items = decode_file("/d/notes.md", ("# Title\n\n" + WORDS).encode(), pre)
    assert [i["key"] for i in items] == [f"/d/notes.md#chunk={c}" for c in range(len(items))]
    assert all(i["modality"] == "text" and i["file_modality"] == "document" for i in items)
    assert items[0]["text"].startswith("# Title")
    assert [i["chunk"] for i in items] == list(range(len(items)))
    assert all(i["page"] is None for i in items)


def test_utf8_bom_and_utf16_are_read():
    [a] = decode_file("/d/a.txt", "\ufeffcaf\u00e9 au lait".encode(), preprocess())
    [b] = decode_file("/d/b.txt", "caf\u00e9 au lait".encode("utf-16"), preprocess())
    assert a["text"] == b["text"] == "caf\u00e9 au lait"


def test_binary_text_file_raises():
    with pytest.raises(DecodeError, match="bin.txt"):
        decode_file("/d/bin.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", preprocess())


def test_pdf_pages_become_page_chunks(media):
    data = (media / "docs" / "volcanoes.pdf").read_bytes()
    items = decode_file("s3://b/volcanoes.pdf", data, preprocess())
    assert [i["key"] for i in items] == ["s3://b/volcanoes.pdf#page=1&chunk=0", "s3://b/volcanoes.pdf#page=2&chunk=0"]
    assert "Mount Etna" in items[0]["text"] and "Pompeii" in items[1]["text"]
    assert [i["page"] for i in items] == [1, 2]


def test_long_pdf_page_is_chunked_and_empty_pages_give_no_items():
    sentences = [f"Sentence number {i} talks about topic {i * 7}." for i in range(60)]
    data = make_media().pdf([sentences, [], ["Last page."]])
    items = decode_file("/d/long.pdf", data, preprocess(document={"chunkChars": 400, "overlapChars": 50}))
    page1 = [i for i in items if i["page"] == 1]
    assert len(page1) > 3 and [i["chunk"] for i in page1] == list(range(len(page1)))
    assert all(len(i["text"]) <= 400 for i in page1)
    assert "Sentence number 59" in page1[-1]["text"]
    assert [(i["page"], i["chunk"], i["text"]) for i in items if i["page"] != 1] == [(3, 0, "Last page.")]


def test_garbage_pdf_raises():
    with pytest.raises(DecodeError, match="junk.pdf.*not a readable PDF"):
        decode_file("/d/junk.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 20, preprocess())
