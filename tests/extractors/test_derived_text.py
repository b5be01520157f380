"""Text one extractor reads or produces (a transcript, OCR words, image tags) reaches a later
text-embedding stage through `add_text`, and search tells where in a file a transcript matched."""

from __future__ import annotations

from prism_pipeline.extractors.base import add_text
from prism_pipeline.extractors.text_embedding import TextEmbedding
from prism_pipeline.search import hit, spoken_at

from .conftest import spec


def test_add_text_joins_once_and_ignores_blank():
    item = {"modality": "image", "text": None}
    add_text(item, "  BICYCLE REPAIR ")
    add_text(item, "tags: bicycle-built-for-two")
    add_text(item, "BICYCLE REPAIR")  # a batch retried item by item must not repeat it
    add_text(item, "   ")
    assert item["text"] == "BICYCLE REPAIR\ntags: bicycle-built-for-two"


def test_text_embedding_takes_any_item_given_text():
    ex = TextEmbedding(spec("text-embedding"))
    assert ex.accepts({"modality": "text", "text": "a chunk"})
    assert ex.accepts({"modality": "text", "text": ""})  # a text item is always its input
    assert ex.accepts({"modality": "audio", "text": "the weather today"})
    assert ex.accepts({"modality": "image", "text": "OPEN DAILY"})
    assert not ex.accepts({"modality": "image", "text": None})
    assert not ex.accepts({"modality": "audio", "text": "  "})


SPEECH = {"speech": {"text": "Good evening. The weather today is sunny.", "segments": [
    {"start": 0.4, "end": 2.0, "text": "Good evening, here is the news."},
    {"start": 9.6, "end": 13.1, "text": "The weather today is sunny and warm"},
    {"start": 13.2, "end": 15.0, "text": "with a light breeze from the sea."}]},
    "timestamp": 0.0, "key": "a.wav#t=0-30", "uri": "a.wav", "text": "Good evening..."}


def test_the_segment_sharing_most_words_with_the_query_gives_the_time():
    assert spoken_at(SPEECH, "is it sunny and warm today") == 9.6
    assert spoken_at(SPEECH, "a breeze from the sea") == 13.2
    assert spoken_at(SPEECH, "nothing in common") == 0.4  # no shared word: the first segment


def test_without_a_transcript_the_item_timestamp_is_the_time():
    assert spoken_at({"timestamp": 3.0, "frame": 72}, "coffee") == 3.0
    assert spoken_at({"page": 1}, "volcano") is None
    found = hit(0.5, {**SPEECH, "timestamp": 30.0}, "sunny weather")
    assert (found.item, found.at, found.uri) == ("t=0-30", 9.6, "a.wav")


def test_the_hit_shows_the_matched_segment():
    found = hit(0.5, SPEECH, "a breeze from the sea")
    assert found.excerpt == "with a light breeze from the sea." and found.text == "Good evening..."
    plain = hit(0.5, {"key": "d.txt#chunk=0", "uri": "d.txt", "text": "Volcanoes"}, "lava")
    assert (plain.excerpt, plain.at) == ("Volcanoes", None)
