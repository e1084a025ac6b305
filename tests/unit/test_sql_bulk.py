"""adapters/sql/bulk.py: what it changes beyond the statements themselves."""

from __future__ import annotations

import inspect
import logging

import pytest


def test_psycopg_warning_about_a_pipeline_already_failing_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The message and its logger are psycopg's own, in the pipeline the writer thread
    # uses and in the async one that commits batches of posts from the loop.
    from psycopg import _pipeline, _pipeline_async

    for module in (_pipeline, _pipeline_async):
        source = inspect.getsource(module)
        assert 'logger.warning("error ignored terminating %r: %s", self, exc2)' in source
        assert module.logger.name == "psycopg"
    import chatsphere.adapters.sql.bulk  # noqa: F401 - installs the filter

    with caplog.at_level(logging.WARNING, logger="psycopg"):
        _pipeline.logger.warning("error ignored terminating %r: %s", "<Pipeline>", "aborted")
        _pipeline.logger.warning("connection lost")
    assert [r.getMessage() for r in caplog.records] == ["connection lost"]


def test_a_statement_log_keeps_what_is_run_on_it_in_order() -> None:
    from chatsphere.adapters.sql.bulk import Statement, StatementLog

    log = StatementLog()
    log.execute("UPDATE rooms SET last_seq = %s", [4], prepare=False)
    log.executemany("INSERT INTO mentions VALUES (?)", iter([("a",), ("b",)]))
    log.execute("INSERT INTO messages SELECT 1")
    assert log.statements == [
        Statement("UPDATE rooms SET last_seq = %s", [4], prepare=False),
        Statement("INSERT INTO mentions VALUES (?)", [("a",), ("b",)], many=True),
        Statement("INSERT INTO messages SELECT 1", None),
    ]
    with pytest.raises(TypeError):  # nothing ran, so a caller that reads rows is wrong
        log.fetchall()
