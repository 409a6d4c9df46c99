from __future__ import annotations

import pytest

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NonRetryable
from worker.handlers.text import (
    count_paragraphs,
    reverse_text,
    slugify,
    split_sentences,
    strip_punctuation,
    text_processing,
    text_stats,
    title_case,
    words,
)

PARAGRAPHS = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps!\n"
    "Does the fox care?\n"
    "\n"
    "No. It doesn't."
)


def test_stats_of_a_known_text() -> None:
    stats = text_stats(PARAGRAPHS, top_n=3)

    assert stats.characters == 96
    assert stats.characters_excluding_spaces == 96 - 16 - 3  # 16 spaces, 3 newlines
    # The, quick, brown, fox, jumps, over, the, lazy, dog, The, dog, sleeps, Does, the,
    # fox, care, No, It, doesn't
    assert stats.words == 19
    assert stats.unique_words == 14
    assert stats.sentences == 5
    assert stats.lines == 4
    assert stats.paragraphs == 2
    assert stats.average_word_length == pytest.approx(72 / 19)
    assert stats.top_words == [("the", 4), ("dog", 2), ("fox", 2)]


def test_empty_and_blank_text_count_nothing() -> None:
    for text in ("", "   \n\n\t "):
        stats = text_stats(text)
        assert stats.words == stats.sentences == stats.paragraphs == stats.unique_words == 0
        assert stats.average_word_length == 0.0
        assert stats.top_words == []
    assert text_stats("").lines == 0


def test_words_keep_apostrophes_inside_and_handle_unicode() -> None:
    # \u2019 is the typographic apostrophe.
    assert words("Don't 'quote' me — it\u2019s 42") == ["Don't", "quote", "me", "it\u2019s", "42"]
    # Combining marks (decomposed é, Devanagari vowel signs) stay inside their word.
    assert words("cafe\u0301 हिन्दी भाषा") == ["cafe\u0301", "हिन्दी", "भाषा"]
    assert words("日本語 Привет, мир!") == ["日本語", "Привет", "мир"]


def test_unique_words_ignore_case_and_apostrophe_style() -> None:
    stats = text_stats("Don't DON\u2019T don't Straße STRASSE")
    # "Straße".lower() keeps ß, so it is not the same word as "strasse".
    assert stats.unique_words == 3
    assert stats.top_words[0] == ("don't", 3)


def test_top_words_break_ties_alphabetically() -> None:
    stats = text_stats("pear apple pear apple fig", top_n=10)
    assert stats.top_words == [("apple", 2), ("pear", 2), ("fig", 1)]


def test_sentences_split_on_terminal_punctuation_followed_by_space() -> None:
    text = 'Pi is 3.14. See example.com! Really?! He said "stop." Wait... ok'
    assert split_sentences(text) == [
        "Pi is 3.14.",
        "See example.com!",
        "Really?!",
        'He said "stop."',
        "Wait...",
        "ok",
    ]


def test_blank_lines_end_sentences_and_paragraphs() -> None:
    text = "Heading\r\n\r\nBody text here.\n  \n\nLast"
    assert split_sentences(text) == ["Heading", "Body text here.", "Last"]
    assert count_paragraphs(text) == 3


def test_slug_is_ascii_lower_case_with_single_hyphens() -> None:
    assert slugify("Héllo, Wörld!") == "hello-world"
    assert slugify("  --Straße & Crème brûlée__2024-- ") == "strasse-creme-brulee-2024"
    assert slugify("日本語") == ""


def test_title_case_keeps_contractions() -> None:
    assert title_case("don't STOP me-now") == "Don't Stop Me-Now"


def test_reverse_keeps_accents_and_emoji_whole() -> None:
    assert reverse_text("abc") == "cba"
    assert reverse_text("cafe\u0301!") == "!e\u0301fac"
    assert reverse_text("a👍🏽b🇫🇷") == "🇫🇷b👍🏽a"
    assert reverse_text("x\r\ny") == "y\r\nx"


def test_strip_punctuation_removes_unicode_punctuation_but_not_symbols() -> None:
    assert strip_punctuation("Hello, «world»! Cost: $5 — ok?") == "Hello world Cost $5  ok"


def test_handler_reports_stats_and_transforms_in_request_order() -> None:
    transforms = [
        tasks_pb2.TEXT_TRANSFORM_SLUG,
        tasks_pb2.TEXT_TRANSFORM_UPPER,
        tasks_pb2.TEXT_TRANSFORM_LOWER,
        tasks_pb2.TEXT_TRANSFORM_TITLE,
        tasks_pb2.TEXT_TRANSFORM_REVERSE,
        tasks_pb2.TEXT_TRANSFORM_NORMALIZE_WHITESPACE,
        tasks_pb2.TEXT_TRANSFORM_STRIP_PUNCTUATION,
    ]
    result = text_processing(
        tasks_pb2.TextProcessingInput(text="  Héllo,   wörld!\n", transforms=transforms)
    )

    assert (result.words, result.sentences, result.lines, result.paragraphs) == (2, 1, 1, 1)
    assert [(t.transform, t.text) for t in result.transforms] == [
        (tasks_pb2.TEXT_TRANSFORM_SLUG, "hello-world"),
        (tasks_pb2.TEXT_TRANSFORM_UPPER, "  HÉLLO,   WÖRLD!\n"),
        (tasks_pb2.TEXT_TRANSFORM_LOWER, "  héllo,   wörld!\n"),
        (tasks_pb2.TEXT_TRANSFORM_TITLE, "  Héllo,   Wörld!\n"),
        (tasks_pb2.TEXT_TRANSFORM_REVERSE, "\n!dlröw   ,olléH  "),
        (tasks_pb2.TEXT_TRANSFORM_NORMALIZE_WHITESPACE, "Héllo, wörld!"),
        (tasks_pb2.TEXT_TRANSFORM_STRIP_PUNCTUATION, "  Héllo   wörld\n"),
    ]


def test_handler_top_words_defaults_to_ten_and_caps_at_a_hundred() -> None:
    text = " ".join(f"w{i}" for i in range(150))
    default = text_processing(tasks_pb2.TextProcessingInput(text=text))
    capped = text_processing(tasks_pb2.TextProcessingInput(text=text, top_words=1000))
    two = text_processing(tasks_pb2.TextProcessingInput(text=text, top_words=2))

    assert len(default.top_words) == 10
    assert len(capped.top_words) == 100
    assert [(w.word, w.count) for w in two.top_words] == [("w0", 1), ("w1", 1)]


def test_handler_rejects_unspecified_transform() -> None:
    request = tasks_pb2.TextProcessingInput(
        text="x", transforms=[tasks_pb2.TEXT_TRANSFORM_UNSPECIFIED]
    )
    with pytest.raises(NonRetryable, match="unsupported transform 0"):
        text_processing(request)


def test_large_text_is_processed_whole() -> None:
    sentence = "Conveyor moves tasks from the gateway to workers, quickly. "
    text = sentence * 20_000  # about 1.2 MB
    result = text_processing(
        tasks_pb2.TextProcessingInput(text=text, transforms=[tasks_pb2.TEXT_TRANSFORM_SLUG])
    )

    assert result.words == 9 * 20_000
    assert result.sentences == 20_000
    assert result.top_words[0].count == 20_000
    assert result.transforms[0].text.startswith("conveyor-moves-tasks-from-the-gateway")
