"""Retention settings: a default in days, per-type ages with units, every mistake named."""

from __future__ import annotations

import pytest

from conveyor.config import ConfigError, StoreSettings


def test_retention_reads_a_default_in_days_and_ages_per_type() -> None:
    settings = StoreSettings.from_env(
        {
            "CONVEYOR_RETENTION_DAYS": "30",
            "CONVEYOR_RETENTION_BY_TYPE": "image_processing=12h, batch_processing=0,send_email=2",
        }
    )
    assert settings.retention_seconds == 30 * 86400
    assert settings.retention_by_type == {
        "image_processing": 12 * 3600,
        "batch_processing": 0,
        "send_email": 2 * 86400,
    }
    assert StoreSettings.from_env({}).retention_seconds == 7 * 86400


def test_bad_retention_settings_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        StoreSettings.from_env(
            {"CONVEYOR_RETENTION_DAYS": "-1", "CONVEYOR_RETENTION_BY_TYPE": "image_processing=soon"}
        )
    problems = " ".join(caught.value.problems)
    assert "CONVEYOR_RETENTION_DAYS='-1'" in problems
    assert "CONVEYOR_RETENTION_BY_TYPE='image_processing=soon'" in problems
