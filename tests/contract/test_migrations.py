"""The Alembic migrations build exactly the schema the code declares, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from chatsphere.adapters.sql.schema import metadata
from chatsphere.adapters.sql.store import SqlStore, _sync_url

# The full-text search objects are dialect-specific SQL in migrations 0001 and 0007, not
# metadata.
_SEARCH_OBJECTS = ("messages_fts", "ix_messages_search", "search_changes", "search_source")


def _declared(
    obj: object, name: str | None, kind: str, reflected: bool, compare_to: object
) -> bool:
    return not (name or "").startswith(_SEARCH_OBJECTS)


async def test_migrated_schema_matches_declared_schema(database_url: str) -> None:
    store = SqlStore(database_url)
    await store.open()
    # A connection of its own: the store's writer keeps its connection checked out.
    engine = create_engine(_sync_url(store.url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _declared})
            diff = compare_metadata(context, metadata)
        assert diff == []
    finally:
        engine.dispose()
        await store.close()


async def test_open_is_idempotent_after_a_restart(database_url: str) -> None:
    for _ in range(2):  # the second start finds the schema current and changes nothing
        store = SqlStore(database_url)
        await store.open()
        await store.close()
