"""adapters/sql/bulk.py: what it changes beyond the statements themselves."""

from __future__ import annotations

import inspect
import logging

import pytest


def test_psycopg_warning_about_a_pipeline_already_failing_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The message and its logger are psycopg's own (psycopg/_pipeline.py).
    from psycopg import _pipeline

    source = inspect.getsource(_pipeline)
    assert 'logger.warning("error ignored terminating %r: %s", self, exc2)' in source
    assert _pipeline.logger.name == "psycopg"
    import chatsphere.adapters.sql.bulk  # noqa: F401 - installs the filter

    with caplog.at_level(logging.WARNING, logger="psycopg"):
        _pipeline.logger.warning("error ignored terminating %r: %s", "<Pipeline>", "aborted")
        _pipeline.logger.warning("connection lost")
    assert [r.getMessage() for r in caplog.records] == ["connection lost"]
