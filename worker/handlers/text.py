"""The ``text_processing`` task: statistics and transforms of a text.

Everything here works on plain ``str``; only :func:`text_processing` sees protos. The
tokenisers (:func:`words`, :func:`split_sentences`) are shared with the summariser and
the batch handler so that "a word" and "a sentence" mean the same thing everywhere.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NonRetryable

DEFAULT_TOP_WORDS = 10
MAX_TOP_WORDS = 100

# A sentence ends at a run of . ! ? (optionally followed by closing quotes or brackets)
# that is followed by whitespace or the end of the text. Requiring the whitespace keeps
# "3.14" and "example.com" in one piece.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|\Z)")
_BLANK_LINE = re.compile(r"\n[^\S\n]*(?:\n\s*)+")

# Letters that NFKD does not decompose into ASCII, spelled the way slugs usually do.
_SLUG_SPELLINGS = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d"}
    | {"Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "\u0131": "i"}
)


def _char_class(members: list[int]) -> str:
    """A regex character-class body matching exactly the given code points."""
    parts: list[str] = []
    start = prev = members[0]
    for cp in [*members[1:], -1]:
        if cp == prev + 1:
            prev = cp
            continue
        parts.append(f"\\U{start:08x}" if start == prev else f"\\U{start:08x}-\\U{prev:08x}")
        start = prev = cp
    return "".join(parts)


@dataclass(frozen=True)
class _Patterns:
    word: re.Pattern[str]
    grapheme: re.Pattern[str]
    punctuation: re.Pattern[str]


@functools.cache
def _patterns() -> _Patterns:
    """Builds the Unicode-aware patterns once per process, on first use.

    Python's ``\\w`` leaves out combining marks, which splits words in Devanagari, Thai or
    decomposed Latin ("cafe\\u0301") into fragments; ``re`` has no ``\\p{M}``, so the mark
    and punctuation classes are built from the Unicode database (tens of ms, once).
    """
    marks: list[int] = []
    punctuation: list[int] = []
    # Planes 4-13 are unassigned and 15-16 private use, so they hold neither category.
    for cp in itertools.chain(range(0x40000), range(0xE0000, 0xF0000)):
        category = unicodedata.category(chr(cp))
        if category[0] == "M":
            marks.append(cp)
        elif category[0] == "P":
            punctuation.append(cp)
    mark = _char_class(marks)
    # Emoji skin-tone modifiers are symbols, but they belong to the preceding character.
    attached = f"[{mark}\\U0001f3fb-\\U0001f3ff]*"
    letter = f"[\\w{mark}]"
    return _Patterns(
        # Apostrophes join words only inside them: "don't" is one word, "'quoted'" is not.
        word=re.compile(f"{letter}+(?:['\u2019]{letter}+)*"),
        # An approximation of extended grapheme clusters: CRLF, flag pairs, and a base
        # character with its marks, modifiers and zero-width-joined continuations.
        grapheme=re.compile(
            f"\\r\\n|[\\U0001f1e6-\\U0001f1ff]{{2}}|.{attached}(?:\\u200d.{attached})*",
            re.DOTALL,
        ),
        punctuation=re.compile(f"[{_char_class(punctuation)}]+"),
    )


def words(text: str) -> list[str]:
    """The words of ``text`` as written: runs of letters, digits and marks.

    >>> words("Don't panic — it's 42!")
    ["Don't", 'panic', "it's", '42']
    """
    return _patterns().word.findall(text)


def word_key(word: str) -> str:
    """The form a word is counted under: lower case, with typographic apostrophes plain."""
    return word.lower().replace("\u2019", "'")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, in order; empty pieces are dropped.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace or the end of the
    text, and also at a blank line, so a heading without a full stop stays on its own.

    >>> split_sentences("It works. Does it?\\n\\nTitle\\n\\nYes... 3.14 is pi!")
    ['It works.', 'Does it?', 'Title', 'Yes...', '3.14 is pi!']
    """
    sentences: list[str] = []
    for block in _BLANK_LINE.split(text):
        start = 0
        for match in _SENTENCE_END.finditer(block):
            sentences.append(block[start : match.end()].strip())
            start = match.end()
        sentences.append(block[start:].strip())
    return [s for s in sentences if s]


def count_paragraphs(text: str) -> int:
    """Blocks of text separated by one or more blank lines."""
    return sum(1 for block in _BLANK_LINE.split(text) if block.strip())


@dataclass(frozen=True)
class TextStats:
    """Statistics of a text; every count is 0 for an empty text."""

    characters: int
    characters_excluding_spaces: int
    words: int
    unique_words: int
    sentences: int
    lines: int
    paragraphs: int
    average_word_length: float
    top_words: list[tuple[str, int]] = field(default_factory=list)


def text_stats(text: str, top_n: int = DEFAULT_TOP_WORDS) -> TextStats:
    """Counts characters, words, sentences, lines and paragraphs, and the top words.

    Top words are lower case, most frequent first, ties in alphabetical order.
    """
    found = words(text)
    counts = Counter(word_key(w) for w in found)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return TextStats(
        characters=len(text),
        characters_excluding_spaces=sum(1 for c in text if not c.isspace()),
        words=len(found),
        unique_words=len(counts),
        sentences=len(split_sentences(text)),
        lines=len(text.splitlines()),
        paragraphs=count_paragraphs(text),
        average_word_length=sum(map(len, found)) / len(found) if found else 0.0,
        top_words=ranked[:top_n],
    )


def title_case(text: str) -> str:
    """Each word capitalised; unlike ``str.title`` it leaves "don't" as "Don't"."""
    return _patterns().word.sub(lambda m: m[0].capitalize(), text)


def reverse_text(text: str) -> str:
    """The characters in reverse order, keeping accents and emoji sequences intact."""
    return "".join(reversed(_patterns().grapheme.findall(text)))


def slugify(text: str) -> str:
    """An ASCII URL slug: accents dropped, lower case, other runs turned into one hyphen.

    >>> slugify("Héllo, Wörld!")
    'hello-world'
    """
    ascii_text = (
        unicodedata.normalize("NFKD", text.translate(_SLUG_SPELLINGS))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def normalize_whitespace(text: str) -> str:
    """Whitespace runs collapsed to one space, ends trimmed."""
    return " ".join(text.split())


def strip_punctuation(text: str) -> str:
    """The text without Unicode punctuation (categories P*); symbols such as $ stay."""
    return _patterns().punctuation.sub("", text)


TRANSFORMS: dict[int, Callable[[str], str]] = {
    tasks_pb2.TEXT_TRANSFORM_UPPER: str.upper,
    tasks_pb2.TEXT_TRANSFORM_LOWER: str.lower,
    tasks_pb2.TEXT_TRANSFORM_TITLE: title_case,
    tasks_pb2.TEXT_TRANSFORM_REVERSE: reverse_text,
    tasks_pb2.TEXT_TRANSFORM_SLUG: slugify,
    tasks_pb2.TEXT_TRANSFORM_NORMALIZE_WHITESPACE: normalize_whitespace,
    tasks_pb2.TEXT_TRANSFORM_STRIP_PUNCTUATION: strip_punctuation,
}
"""TextTransform value -> the function applying it."""


def text_processing(input: tasks_pb2.TextProcessingInput) -> tasks_pb2.TextProcessingResult:
    """Computes statistics of a text and applies the requested transforms in order."""
    unknown = [t for t in input.transforms if t not in TRANSFORMS]
    if unknown:
        raise NonRetryable(f"text_processing: unsupported transform {unknown[0]}")
    top_n = min(input.top_words or DEFAULT_TOP_WORDS, MAX_TOP_WORDS)
    stats = text_stats(input.text, top_n)
    return tasks_pb2.TextProcessingResult(
        characters=stats.characters,
        characters_excluding_spaces=stats.characters_excluding_spaces,
        words=stats.words,
        unique_words=stats.unique_words,
        sentences=stats.sentences,
        lines=stats.lines,
        paragraphs=stats.paragraphs,
        average_word_length=stats.average_word_length,
        top_words=[tasks_pb2.WordCount(word=w, count=n) for w, n in stats.top_words],
        transforms=[
            tasks_pb2.TransformOutput(transform=t, text=TRANSFORMS[t](input.text))
            for t in input.transforms
        ],
    )
