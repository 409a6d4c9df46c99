from __future__ import annotations

import pytest

from conveyor.api.tasks.v1 import tasks_pb2
from worker.handlers.summarize import (
    TEXTRANK_MAX_SENTENCES,
    ai_summarization,
    content_words,
    summarize,
    textrank_scores,
)

# Three sentences about solar panels, three unrelated ones in between.
SOLAR = (
    "Solar panels turn sunlight into electricity. "
    "My cousin visited Spain last summer. "
    "Modern solar panels convert more sunlight into electricity than older panels did. "
    "The cafe on the corner sells good bread. "
    "Cheap solar panels let households produce their own electricity from sunlight. "
    "Chess is a game for two players."
)


def test_picks_the_central_sentences_in_original_order() -> None:
    result = summarize(SOLAR, 3)

    assert [s.index for s in result.sentences] == [0, 2, 4]
    assert result.summary == (
        "Solar panels turn sunlight into electricity. "
        "Modern solar panels convert more sunlight into electricity than older panels did. "
        "Cheap solar panels let households produce their own electricity from sunlight."
    )
    assert result.original_sentence_count == 6
    assert result.compression_ratio == pytest.approx(len(result.summary) / len(SOLAR))


def test_respects_max_sentences_and_keeps_the_best_ones() -> None:
    one = summarize(SOLAR, 1)
    two = summarize(SOLAR, 2)

    assert len(one.sentences) == 1
    assert len(two.sentences) == 2
    assert {s.index for s in one.sentences} <= {s.index for s in two.sentences} <= {0, 2, 4}
    assert all(0.0 < s.score <= 1.0 for s in two.sentences)


def test_short_text_returns_every_sentence() -> None:
    result = summarize("Only one. And two!", 5)

    assert [s.text for s in result.sentences] == ["Only one.", "And two!"]
    assert result.summary == "Only one. And two!"
    assert result.compression_ratio == pytest.approx(1.0)


def test_empty_text_gives_an_empty_summary() -> None:
    result = summarize("", 3)
    assert result.sentences == []
    assert result.summary == ""
    assert result.original_sentence_count == 0
    assert result.compression_ratio == 0.0


def test_ties_go_to_the_earlier_sentence() -> None:
    text = "Alpha beta. Gamma delta. Epsilon zeta."
    assert [s.index for s in summarize(text, 2).sentences] == [0, 1]


def test_is_deterministic() -> None:
    assert summarize(SOLAR * 3, 4) == summarize(SOLAR * 3, 4)


def test_sentence_whitespace_is_collapsed_in_the_output() -> None:
    result = summarize("First   line\nwraps here. Second.", 1)
    assert result.sentences[0].text == "First line wraps here."


def test_stop_words_and_numbers_do_not_count_as_content() -> None:
    assert content_words("The 3 cats and THE dog don't sleep") == ["cats", "dog", "sleep"]


def test_textrank_favours_the_sentence_others_echo() -> None:
    tokens = [["solar", "power"], ["solar", "power", "grid"], ["grid", "power"], ["chess"]]
    ranks = textrank_scores(tokens)

    assert ranks.index(max(ranks)) == 1
    assert ranks[3] == 0.0  # isolated: nothing points at it


def test_unicode_text_is_summarised() -> None:
    text = "Le café est chaud. Le café est très bon. Il pleut à Paris."
    result = summarize(text, 1)
    assert result.sentences[0].text.startswith("Le café")


def test_handler_defaults_to_three_sentences() -> None:
    result = ai_summarization(tasks_pb2.AiSummarizationInput(text=SOLAR))

    assert [s.index for s in result.sentences] == [0, 2, 4]
    assert result.original_sentence_count == 6
    assert result.summary.startswith("Solar panels turn sunlight")


def test_long_text_beyond_textrank_still_finds_the_topic() -> None:
    filler = [f"Filler{i} sentence{i}." for i in range(TEXTRANK_MAX_SENTENCES + 100)]
    filler[10] = "Solar panels make solar power."
    filler[300] = "Solar power needs solar panels."
    result = summarize(" ".join(filler), 2)

    assert result.original_sentence_count == TEXTRANK_MAX_SENTENCES + 100
    assert [s.index for s in result.sentences] == [10, 300]
