"""Each PostgreSQL case of the benchmark runs in a database created empty for it, and the
generator has the server checkpoint where it syncs the machine's dirty pages."""

from __future__ import annotations

import psycopg
import pytest
from bench.loadgen import checkpoint_postgres
from bench.run import PG_SETTINGS, fresh_pg_database, libpq_dsn, postgres_settings
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, require_service

pytestmark = pytest.mark.slow


def _databases() -> set[str]:
    with psycopg.connect(libpq_dsn(PG_URL)) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_a_case_gets_an_empty_database_that_is_dropped_afterwards() -> None:
    require_service("PostgreSQL", PG_URL, 5432)
    # Named after the "postgres" database so that a benchmark running beside the suite
    # (whose cases use the test database's name) is not disturbed.
    base = make_url(PG_URL).set(database="postgres").render_as_string(hide_password=False)
    for _ in range(2):  # the second round finds the first one's database gone, not reused
        with fresh_pg_database(base) as url:
            name = make_url(url).database
            assert name is not None and name != "postgres"
            assert make_url(url).drivername == make_url(PG_URL).drivername
            with psycopg.connect(libpq_dsn(url)) as conn:
                tables = conn.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                ).fetchone()
                assert tables == (0,)
                conn.execute("CREATE TABLE left_behind (id int)")
            assert name in _databases()
        assert name not in _databases()


def test_the_run_records_the_servers_settings_as_the_server_reports_them() -> None:
    require_service("PostgreSQL", PG_URL, 5432)

    settings = postgres_settings(PG_URL)

    assert set(settings) == set(PG_SETTINGS)
    with psycopg.connect(libpq_dsn(PG_URL)) as conn:
        for name, value in settings.items():
            assert conn.execute(f"SHOW {name}").fetchone() == (value,)


def test_an_unreachable_server_records_no_settings() -> None:
    assert postgres_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none") == {}


def _requested_checkpoints() -> int:
    with psycopg.connect(libpq_dsn(PG_URL)) as conn:
        row = conn.execute("SELECT checkpoints_req FROM pg_stat_bgwriter").fetchone()
    assert row is not None
    return int(row[0])


def test_the_generator_has_the_server_checkpoint_now() -> None:
    require_service("PostgreSQL", PG_URL, 5432)
    dsn = libpq_dsn(PG_URL)
    assert dsn.startswith("postgresql://") and make_url(dsn).database == make_url(PG_URL).database
    before = _requested_checkpoints()

    checkpoint_postgres(dsn)

    # CHECKPOINT is counted as a requested checkpoint once it has completed.
    assert _requested_checkpoints() > before


def test_a_checkpoint_that_cannot_run_is_logged_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint_postgres("postgresql://postgres@127.0.0.1:1/none")

    assert "CHECKPOINT failed" in capsys.readouterr().err
