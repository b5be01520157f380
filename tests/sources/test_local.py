import os
import threading
from pathlib import Path

import pytest

from prism_api import SourceSpec
from prism_pipeline.sources import FileRef, ReadError, SourceError, compile_globs, list_files, read_bytes

FILES = {
    "a.jpg": b"a" * 10,
    "b.txt": b"bb",
    "photos/c.jpg": b"c" * 30,
    "photos/2024/d.JPG": b"d",
    "photos/2024/e.png": b"ee",
    "docs/f.pdf": b"%PDF",
    "docs/drafts/g.pdf": b"%PDF-draft",
}


@pytest.fixture()
def tree(tmp_path):
    for rel, data in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def rels(refs, root):
    return [os.path.relpath(r.uri, root) for r in refs]


def test_default_lists_everything_sorted_with_absolute_paths_and_sizes(tree):
    refs = list_files(SourceSpec(uri=str(tree)))
    assert rels(refs, tree) == sorted(FILES)
    assert all(os.path.isabs(r.uri) for r in refs)
    assert refs == sorted(refs, key=lambda r: r.uri)
    assert {os.path.relpath(r.uri, tree): r.size for r in refs} == {k: len(v) for k, v in FILES.items()}


@pytest.mark.parametrize("include, exclude, expected", [
    (["*.jpg"], [], ["a.jpg"]),                                    # '*' stays in one directory
    (["**/*.jpg"], [], ["a.jpg", "photos/c.jpg"]),                 # '**/' also matches no directory
    (["**/*.[jJ][pP][gG]"], [], ["a.jpg", "photos/2024/d.JPG", "photos/c.jpg"]),
    (["photos/**"], ["**/*.png"], ["photos/2024/d.JPG", "photos/c.jpg"]),
    (["**/*.pdf"], ["docs/drafts/**"], ["docs/f.pdf"]),
    (["?.txt", "docs/*"], [], ["b.txt", "docs/f.pdf"]),
    (["**/[!a-c]*"], [], ["docs/drafts/g.pdf", "docs/f.pdf", "photos/2024/d.JPG", "photos/2024/e.png"]),
    (["./docs/**/*.pdf"], [], ["docs/drafts/g.pdf", "docs/f.pdf"]),
])
def test_include_exclude_globs_are_relative_to_the_uri(tree, include, exclude, expected):
    refs = list_files(SourceSpec(uri=str(tree) + "/", include=include, exclude=exclude))
    assert rels(refs, tree) == expected


def test_hidden_files_and_folders_are_not_listed(tree):
    (tree / ".DS_Store").write_bytes(b"x")
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD.txt").write_bytes(b"ref")
    (tree / "photos" / "._c.jpg").write_bytes(b"resource fork")
    assert rels(list_files(SourceSpec(uri=str(tree))), tree) == sorted(FILES)


def test_glob_special_characters_are_literal():
    match = compile_globs(["a+b (1).txt"], [])
    assert match("a+b (1).txt") and not match("aab (1).txt")


def test_file_scheme_relative_path_and_single_file(tree, monkeypatch):
    def fingerprinted(path: Path) -> FileRef:  # the listing's version of the file: size and mtime in ns
        st = path.stat()
        return FileRef(str(path), st.st_size, f"{st.st_size}:{st.st_mtime_ns}")

    assert list_files(SourceSpec(uri=f"file://{tree}/docs")) == [
        fingerprinted(tree / "docs" / "drafts" / "g.pdf"), fingerprinted(tree / "docs" / "f.pdf")]
    monkeypatch.chdir(tree)
    assert rels(list_files(SourceSpec(uri="photos", include=["*.jpg"])), tree) == ["photos/c.jpg"]
    assert list_files(SourceSpec(uri=str(tree / "b.txt"))) == [fingerprinted(tree / "b.txt")]


def test_missing_directory_is_a_source_error_naming_the_field(tmp_path):
    with pytest.raises(SourceError, match=r"spec\.source\.uri: '.*nowhere' does not exist"):
        list_files(SourceSpec(uri=str(tmp_path / "nowhere")))


def test_unsupported_scheme_is_a_source_error():
    with pytest.raises(SourceError, match=r"unsupported scheme 'ftp://'.*use s3://, gs://"):
        list_files(SourceSpec(uri="ftp://host/dir"))


def test_gs_without_gcsfs_names_the_package():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="gcsfs"):
            list_files(SourceSpec(uri="gs://bucket/prefix/"))
        with pytest.raises(ReadError, match="gs://bucket/a.jpg: .*gcsfs"):  # each file says why too
            read_bytes("gs://bucket/a.jpg", SourceSpec(uri="gs://bucket/"))
    else:
        pytest.skip("gcsfs is installed; this checks the message shown without it")


def test_read_bytes_returns_the_content(tree):
    assert read_bytes(str(tree / "photos" / "c.jpg"), SourceSpec(uri=str(tree))) == b"c" * 30
    assert read_bytes(f"file://{tree}/b.txt", SourceSpec(uri=str(tree))) == b"bb"


def test_oversized_file_is_refused(tree):
    with pytest.raises(ReadError, match=r"c\.jpg: oversized.*maxFileBytes=20"):
        read_bytes(str(tree / "photos" / "c.jpg"), SourceSpec(uri=str(tree), max_file_bytes=20))
    assert read_bytes(str(tree / "a.jpg"), SourceSpec(uri=str(tree), max_file_bytes=10)) == b"a" * 10


def test_one_size_rule_for_the_listed_and_the_fetched_size(tree):
    from prism_pipeline.sources import check_size

    source = SourceSpec(uri=str(tree), max_file_bytes=20)
    with pytest.raises(ReadError, match=r"^/x\.mp4: oversized: 21 bytes > spec\.source\.maxFileBytes=20; raise"):
        check_size("/x.mp4", 21, 20)
    check_size("/x.mp4", 20, 20)
    # The listed size refuses a file before any fetch: this one does not even exist.
    with pytest.raises(ReadError, match=r"gone\.jpg: oversized: 5000 bytes > spec\.source\.maxFileBytes=20"):
        read_bytes(str(tree / "gone.jpg"), source, size=5000)
    # A listing that understates the size (stale, or a source that lies) is caught after the fetch.
    with pytest.raises(ReadError, match=r"c\.jpg: oversized: 30 bytes > spec\.source\.maxFileBytes=20"):
        read_bytes(str(tree / "photos" / "c.jpg"), source, size=3)


def test_missing_file_is_a_read_error(tree):
    with pytest.raises(ReadError, match="gone.jpg: missing"):
        read_bytes(str(tree / "gone.jpg"), SourceSpec(uri=str(tree)))


def test_a_read_that_blocks_times_out(tmp_path):
    """A FIFO with no writer blocks open() forever, like a hung network mount."""
    fifo = tmp_path / "stuck.txt"
    os.mkfifo(fifo)
    try:
        assert list_files(SourceSpec(uri=str(tmp_path))) == []  # never listed: reading it could block
        with pytest.raises(ReadError, match=r"stuck\.txt: timed out after 0\.3s.*readTimeoutSeconds"):
            read_bytes(str(fifo), SourceSpec(uri=str(tmp_path), read_timeout_seconds=0.3))
    finally:
        # Release the abandoned reader thread: a writer that opens and closes gives it EOF.
        threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True).start()
