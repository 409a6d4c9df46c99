"""What a handler hands the worker besides its result: progress, errors, retry delays."""

from __future__ import annotations

import math

import pytest

from conveyor.errors import Retry
from worker.outcomes import retry_asked, task_error
from worker.progress import progress_report


@pytest.mark.parametrize(
    ("current", "total", "problem"),
    [(-1, 0, "current"), (2**64, 0, "current"), (1.5, 2, "current"), (1, True, "total")],
)
def test_progress_numbers_out_of_range_are_a_clear_error(
    current: int, total: int, problem: str
) -> None:
    with pytest.raises(ValueError, match=f"progress {problem} must be an int from 0 to 2"):
        progress_report(current, total, "")


def test_progress_and_error_texts_keep_what_utf8_can_hold() -> None:
    assert progress_report(1, 2, "a\ud800b").message == "a\ufffdb"
    assert progress_report(1, 2, "x" * 600).message == "x" * 500
    assert task_error(1, "Kind\udcff", "bad \ud800").SerializeToString()


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1.0, 10**9, "5", True])
def test_a_retry_delay_out_of_range_falls_back_to_the_backoff(delay: object) -> None:
    reason, used = retry_asked(Retry(delay=delay, reason="later"))  # type: ignore[arg-type]
    assert used is None
    assert reason.startswith("later (Retry delay ") and "the task's backoff was used" in reason


def test_a_retry_delay_in_range_is_kept() -> None:
    assert retry_asked(Retry(delay=2, reason="later")) == ("later", 2.0)
    assert retry_asked(Retry(reason="later")) == ("later", None)
