"""The ``ai_summarization`` task: an extractive summary, computed locally.

No model is downloaded. Each sentence gets two scores, both scaled to [0, 1] and
averaged:

* word frequency (Luhn): the mean document frequency of its content words, so a
  sentence made of the text's recurring topic words scores high;
* TextRank: PageRank over a graph whose edges are content-word overlap between
  sentences, so a sentence that many others echo scores high.

TextRank compares every pair of sentences, so it is skipped for very long texts, where
word frequency alone decides. Everything is deterministic: ties go to the earlier
sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conveyor.api.tasks.v1 import tasks_pb2
from worker.handlers.text import normalize_whitespace, split_sentences, word_key, words

DEFAULT_MAX_SENTENCES = 3
MAX_SENTENCES = 100
TEXTRANK_MAX_SENTENCES = 400
"""Above this many sentences the quadratic TextRank step is skipped."""
_DAMPING = 0.85
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-9

# A word list reads better as text than as 180 quoted strings.
STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't
    do does doesn't doing don't down during each even ever every few for from further had
    hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
    him himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its
    itself just let's may me might more most much must mustn't my myself no nor not now of
    off often on once one only or other ought our ours ourselves out over own per quite
    rather really same shall shan't she she'd she'll she's should shouldn't since so some
    still such than that that's the their theirs them themselves then there there's these
    they they'd they'll they're they've this those though through thus to too under until
    up upon us very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's whether which while who who's whom whose why why's will with
    within without won't would wouldn't yet you you'd you'll you're you've your yours
    yourself yourselves
    """.split()  # noqa: SIM905
)
"""English function words, which say nothing about what a sentence is about."""


@dataclass(frozen=True)
class Scored:
    """A sentence with its position in the text and its relevance score."""

    index: int
    text: str
    score: float


@dataclass(frozen=True)
class Summary:
    """An extractive summary: chosen sentences in original order."""

    sentences: list[Scored]
    original_sentence_count: int
    summary: str
    compression_ratio: float


def content_words(sentence: str) -> list[str]:
    """The lower-case words of a sentence that are not stop words or bare numbers."""
    keys = (word_key(w) for w in words(sentence))
    return [k for k in keys if k not in STOP_WORDS and not k.isdigit()]


def _scaled(values: list[float]) -> list[float]:
    """Values divided by the largest one, so different scores can be averaged."""
    top = max(values, default=0.0)
    return [v / top for v in values] if top > 0 else [0.0] * len(values)


def frequency_scores(tokens: list[list[str]]) -> list[float]:
    """Each sentence's mean document frequency of its content words, scaled to [0, 1]."""
    freq: dict[str, int] = {}
    for sentence in tokens:
        for word in sentence:
            freq[word] = freq.get(word, 0) + 1
    return _scaled([sum(freq[w] for w in s) / len(s) if s else 0.0 for s in tokens])


def _similarity(a: set[str], b: set[str], len_a: int, len_b: int) -> float:
    """TextRank's overlap similarity, normalised by sentence length (log-scaled)."""
    overlap = len(a & b)
    if not overlap:
        return 0.0
    # log1p keeps one-word sentences from dividing by log(1) = 0.
    return overlap / (math.log1p(len_a) + math.log1p(len_b))


def textrank_scores(tokens: list[list[str]]) -> list[float]:
    """PageRank over the sentence-similarity graph, scaled to [0, 1]."""
    n = len(tokens)
    if n == 0:
        return []
    sets = [set(s) for s in tokens]
    weights = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            w = _similarity(sets[i], sets[j], len(tokens[i]), len(tokens[j]))
            weights[i][j] = weights[j][i] = w
    out_weight = [sum(row) for row in weights]
    # Incoming edges as (source, share of the source's weight): one pass per iteration.
    incoming = [
        [(j, weights[j][i] / out_weight[j]) for j in range(n) if weights[j][i]] for i in range(n)
    ]
    rank = [1.0 / n] * n
    for _ in range(_MAX_ITERATIONS):
        new = [
            (1 - _DAMPING) / n + _DAMPING * sum(rank[j] * share for j, share in edges)
            for edges in incoming
        ]
        converged = max(abs(a - b) for a, b in zip(new, rank, strict=True)) < _TOLERANCE
        rank = new
        if converged:
            break
    # Isolated sentences keep only the teleport share; that is the floor, not a signal.
    floor = (1 - _DAMPING) / n
    return _scaled([r - floor for r in rank])


def summarize(text: str, max_sentences: int = DEFAULT_MAX_SENTENCES) -> Summary:
    """Picks the ``max_sentences`` most central sentences of ``text``, in original order.

    >>> summarize("Cats purr. Cats and dogs sleep a lot. Dogs bark.", 1).summary
    'Cats and dogs sleep a lot.'
    """
    sentences = [normalize_whitespace(s) for s in split_sentences(text)]
    tokens = [content_words(s) for s in sentences]
    scores = frequency_scores(tokens)
    if len(sentences) <= TEXTRANK_MAX_SENTENCES:
        ranks = textrank_scores(tokens)
        scores = [(f + r) / 2 for f, r in zip(scores, ranks, strict=True)]
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    chosen = sorted(order[: max(max_sentences, 0)])
    picked = [Scored(i, sentences[i], scores[i]) for i in chosen]
    summary = " ".join(s.text for s in picked)
    return Summary(
        sentences=picked,
        original_sentence_count=len(sentences),
        summary=summary,
        compression_ratio=len(summary) / len(text) if text else 0.0,
    )


def ai_summarization(input: tasks_pb2.AiSummarizationInput) -> tasks_pb2.AiSummarizationResult:
    """Summarises a text by extracting its most central sentences."""
    limit = min(input.max_sentences or DEFAULT_MAX_SENTENCES, MAX_SENTENCES)
    result = summarize(input.text, limit)
    return tasks_pb2.AiSummarizationResult(
        summary=result.summary,
        sentences=[
            tasks_pb2.ScoredSentence(index=s.index, text=s.text, score=s.score)
            for s in result.sentences
        ],
        original_sentence_count=result.original_sentence_count,
        compression_ratio=result.compression_ratio,
    )
