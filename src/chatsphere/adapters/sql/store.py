"""SqlStore: the Store port on SQLAlchemy 2 Core, for SQLite and PostgreSQL.

SQLite runs in WAL mode with one write connection (``BEGIN IMMEDIATE``) fed by the
group-commit writer, and a separate pool for reads. PostgreSQL has a read pool, the
writer thread's connections, and one async connection that commits batches of posts
from the event loop (``pipelined.py``); per-room counters are locked with
``SELECT … FOR UPDATE`` so several nodes can write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...domain.events import EventType, RoomEvent
from ...domain.messages import Message, MessageEdit, MessageStatus, Reaction
from ...domain.rooms import Member, MembershipState, Room, RoomSummary
from ...errors import ChatError, ErrorCode, not_a_member
from ...ports.store import CommitListener, StoredEvent, WriteCommand
from ...protocol.codec import room_event_frame
from ...protocol.views import member_view, room_view
from ...timings import TimingLog
from . import schema as t
from .apply import BatchApplier, KnownPlan, Outcome
from .background import lower_thread_priority
from .codec import (
    dumps,
    from_ms_required,
    member_from_row,
    member_row,
    message_from_row,
    room_from_row,
    search_words,
    settings_to_json,
    to_ms,
)
from .pipelined import PipelinedCommitter
from .replay import LOG_AFTER, log_after_params, stored_event
from .search_index import SearchIndex
from .writeback import write_back_gradually
from .writer import GroupCommitWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The synchronous driver the writer thread uses for each async driver's dialect.
_SYNC_DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}


def _sync_url(url: URL) -> URL:
    return url.set(drivername=_SYNC_DRIVERS.get(url.get_backend_name(), url.drivername))


_MIGRATIONS = Path(__file__).parent / "migrations"

#: SQLite: the WAL size (4 KiB pages, ~200 MiB) past which the writer checkpoints within
#: a commit after all, should the background checkpoint fall behind.
_WRITER_AUTOCHECKPOINT_PAGES = 50_000
#: SQLite: the WAL size (frames, ~64 MiB) past which the maintenance task has the writer
#: finish a checkpoint between two commits, so that the WAL starts over (see _restart_wal).
WAL_RESTART_FRAMES = 16_384
#: SQLite: at most this many chunks of messages indexed per maintenance round, so that a
#: long backlog (a rebuilt index) does not hold up the WAL's upkeep.
SEARCH_CHUNKS_PER_ROUND = 5
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync

#: PostgreSQL, read sessions: plan every execution of a prepared statement for its own
#: parameters and the tables as they are now. asyncpg prepares every statement on the
#: server, and after five executions PostgreSQL may settle on a generic plan for the
#: connection's life, made perhaps while the tables were empty. The write connections
#: keep generic plans for their inserts (planning an INSERT afresh took ~30 µs each
#: time) and never prepare the two lookups whose plans depend on table
#: sizes (see bulk.py); on a node started on an empty database the prepared client-id
#: lookup had settled on a scan of ``messages`` in every group commit.
_PG_PLAN_CACHE_MODE = "force_custom_plan"


def _pg_connect_args(url: URL) -> dict[str, Any]:
    """The driver's way to start each PostgreSQL session with our settings."""
    if url.get_driver_name() == "asyncpg":
        return {"server_settings": {"plan_cache_mode": _PG_PLAN_CACHE_MODE}}
    return {"options": f"-c plan_cache_mode={_PG_PLAN_CACHE_MODE}"}  # psycopg, libpq's way


_USER_ROOM_IDS = "SELECT room_id FROM memberships WHERE user_id = ? AND state = ?"

# The access cache's two reads (every connect, join and refill), built once: built per
# call, a membership read cost the node 230 µs of CPU on SQLite; prebuilt, 125 µs.
_GET_ROOM = select(t.rooms).where(t.rooms.c.id == bindparam("room_id", type_=String))
_GET_MEMBER = select(t.memberships).where(
    t.memberships.c.room_id == bindparam("room_id", type_=String),
    t.memberships.c.user_id == bindparam("user_id", type_=String),
)


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for running this store's migrations on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _alembic_upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


class SqlStore:
    """Durable store. Construct, then ``await open()``."""

    def __init__(
        self,
        url: str,
        *,
        write_batch_max: int = 512,
        sqlite_synchronous: str = "FULL",
        checkpoint_interval: float = 1.0,
        wal_restart_frames: int = WAL_RESTART_FRAMES,
        timings: TimingLog | None = None,
    ) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if self.dialect == "sqlite" and parsed.database in (None, "", ":memory:"):
            # In-memory SQLite is one database per connection; use a private file instead.
            self._tempdir = tempfile.TemporaryDirectory(prefix="chatsphere-")
            parsed = parsed.set(database=str(Path(self._tempdir.name) / "chatsphere.db"))
        self.url = parsed
        self._synchronous = sqlite_synchronous
        self._sync_engine: Engine
        # The writer thread's connection, held across transactions (writer thread only).
        self._write_conn: Connection | None = None
        self._read_engine: AsyncEngine
        # One thread owns every write transaction (SQLite allows one writer anyway).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chatsphere-writer")
        # SQLite reads run whole in reader threads too: through the async driver each
        # cursor operation was its own thread hop (~19 loop round trips per read).
        self._sync_reads: Engine | None = None
        self._read_executor: ThreadPoolExecutor | None = None
        self._applier = BatchApplier(self.dialect)
        # PostgreSQL: batches of posts to known rooms are committed from the loop.
        self._pipelined: PipelinedCommitter | None = None
        # SQLite's full-text index: a file and a thread of its own (search_index.py).
        self._search_index: SearchIndex | None = None
        self._pruned_changes = 0  # search_changes is pruned up to here
        self._writer: GroupCommitWriter[WriteCommand, RoomEvent | None] = GroupCommitWriter(
            self._run_batch, write_batch_max
        )
        self._listener: CommitListener = lambda events: None
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_interval = checkpoint_interval
        self._wal_restart_frames = wal_restart_frames
        # A descriptor of the database file kept open to sync it (see _checkpoint); never
        # closed while SQLite has the file open, as closing any descriptor of a file drops
        # every POSIX lock the process holds on it, SQLite's included.
        self._db_fd: int | None = None
        self.wal_restarts = 0
        # The node's timings log (TIMINGS_LOG), when it keeps one: see timings.py.
        self._timings = timings
        # Checkpoints run in a thread of their own at a lower priority (background.py).
        self._checkpoint_executor: ThreadPoolExecutor | None = None

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        sync_url = _sync_url(self.url)
        if self.dialect == "sqlite":
            if self.url.database:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self._sync_engine = create_engine(
                sync_url,
                pool_size=1,
                max_overflow=0,
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            self._read_engine = create_async_engine(
                self.url, pool_size=8, max_overflow=8, connect_args={"timeout": 30}
            )
            # The writer keeps the hot index and full-text pages cached: with SQLite's
            # default 2 MB it re-read them from the OS on most batches (pread per page).
            self._configure_sqlite(
                self._sync_engine,
                "BEGIN IMMEDIATE",
                cache_kib=32_768,
                autocheckpoint=_WRITER_AUTOCHECKPOINT_PAGES,
            )
            self._configure_sqlite(self._read_engine.sync_engine, "BEGIN")
            self._sync_reads = create_engine(
                sync_url,
                pool_size=4,
                max_overflow=0,
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            self._configure_sqlite(self._sync_reads, "BEGIN")
            self._read_executor = ThreadPoolExecutor(4, thread_name_prefix="chatsphere-reader")
            self._checkpoint_executor = ThreadPoolExecutor(
                1, thread_name_prefix="chatsphere-checkpoint", initializer=lower_thread_priority
            )
        else:
            self._sync_engine = create_engine(sync_url, pool_size=2, max_overflow=2)
            self._read_engine = create_async_engine(
                self.url,
                pool_size=10,
                max_overflow=10,
                connect_args=_pg_connect_args(self.url),
            )
        await self._in_writer(self._migrate)
        if self.dialect == "postgresql":
            conninfo = sync_url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._pipelined = PipelinedCommitter(conninfo)
            await self._pipelined.open()
        if self._read_executor is not None and self.url.database:  # it exists now
            self._db_fd = os.open(self.url.database, os.O_RDONLY)
        if self._read_executor is not None:
            assert self.url.database is not None  # SQLite always has a file (see __init__)
            search_index = SearchIndex(Path(self.url.database))
            await search_index.open()  # stops its own thread if it fails
            self._search_index = search_index
        self._writer.start()
        if self._read_executor is not None:
            self._checkpointer = asyncio.get_running_loop().create_task(
                self._maintain_periodically(), name="sqlite-maintenance"
            )

    def _prune_search_changes(self, consumed: int) -> None:
        with self._write_transaction() as conn:
            conn.exec_driver_sql("DELETE FROM search_changes WHERE seq <= ?", (consumed,))

    async def _maintain_periodically(self) -> None:
        """SQLite upkeep off the commit path, every interval: the WAL, then the search index.

        One after the other, not side by side: the indexer's read of the messages file
        holds a snapshot for its few milliseconds, and a checkpoint that ran then could
        not copy every frame, so the WAL could not start over (see _restart_wal).

        Left to the writer, a checkpoint runs inside whichever commit pushes the WAL past
        1,000 pages: that batch waits while hundreds of pages are copied and the database
        file is synced, and every send queued behind it sees the spike. A PASSIVE
        checkpoint from a reader connection runs beside the writer and blocks no one.
        The writer still checkpoints itself past a much larger WAL, should this fall behind.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._checkpoint_interval)
            try:
                frames = await loop.run_in_executor(self._checkpoint_executor, self._checkpoint)
                if frames >= self._wal_restart_frames:
                    await self._restart_wal()
            except Exception:  # the next round tries again; the writer is the fallback
                log.exception("WAL checkpoint failed")
            if self._search_index is not None:
                try:
                    started = time.monotonic_ns()
                    indexed = await self._search_index.catch_up(SEARCH_CHUNKS_PER_ROUND)
                    if self._timings is not None:
                        wall = time.monotonic_ns() - started
                        self._timings.record("search", started, wall, None, f"indexed={indexed}")
                    consumed = self._search_index.change_seq
                    if consumed > self._pruned_changes:
                        prune = functools.partial(self._prune_search_changes, consumed)
                        await self._in_writer(prune)
                        self._pruned_changes = consumed
                except Exception:  # the next round or a search tries again
                    log.exception("full-text indexing failed")

    async def _restart_wal(self) -> None:
        """Have the WAL start over from its beginning, at the cost of a short writer pause.

        SQLite reuses the WAL from its start only once a checkpoint has copied every
        frame and then a write begins; a checkpoint beside a busy writer never gets there,
        as commits land while it copies. Without this the WAL grew until the writer's own
        fallback checkpoint (past 50,000 pages, every few seconds under load) copied the
        rest and synced the database in one commit: 30-60 ms during which every send
        waited. Here the checkpoint thread copies nearly everything first (two more
        passes, each over what the previous one let in), then the writer thread finishes
        between two commits, where nothing can land while it copies the last frames.
        """
        loop = asyncio.get_running_loop()
        for _ in range(2):
            await loop.run_in_executor(self._checkpoint_executor, self._checkpoint)
        if await self._in_writer(self._finish_checkpoint):
            self.wal_restarts += 1

    def _finish_checkpoint(self) -> bool:
        """Checkpoint on the writer's connection, between transactions; writer thread only.

        True when every frame was copied, so the next transaction starts the WAL over.
        """
        conn = self._writer_connection()
        timings = self._timings
        if timings is not None:
            start, cpu = time.monotonic_ns(), time.thread_time_ns()
        try:
            raw = conn.connection.driver_connection
            assert raw is not None  # a connection checked out of the pool has one
            busy, log_frames, copied = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except BaseException:
            self._close_write_conn()  # as after a failed transaction: the next one reconnects
            raise
        complete = bool(busy == 0 and log_frames == copied)
        if timings is not None:
            detail = f"log={log_frames} copied={copied} complete={int(complete)}"
            timings.record_since("wal_restart", start, cpu, detail)
        return complete

    def _checkpoint(self) -> int:
        """A PASSIVE checkpoint from a reader connection; returns the WAL's size in frames.

        SQLite syncs the database file only after a checkpoint that copied every frame,
        so the pages copied by all the others stay dirty in the page cache until then, and
        that one sync wrote them all back: 20-25 ms with the writer waiting, when
        :meth:`_restart_wal` finished the checkpoint in the writer's thread. They are
        written back here instead, each round, where no commit waits for them.
        """
        assert self._sync_reads is not None
        timings = self._timings
        if timings is not None:
            start, cpu = time.monotonic_ns(), time.thread_time_ns()
        with self._sync_reads.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        if timings is not None:
            synced = time.monotonic_ns()
        if self._db_fd is not None:
            try:
                # Piece by piece first: one burst of a second's pages held up the WAL's
                # syncs of the commits landing meanwhile (writeback.py).
                write_back_gradually(self._db_fd)
                _fdatasync(self._db_fd)
            except OSError:  # the finishing checkpoint then syncs it, in the writer
                log.warning("could not sync the database file", exc_info=True)
        if timings is not None:
            detail = (
                f"log={row[1]} copied={row[2]} sync_us={(time.monotonic_ns() - synced) // 1000}"
            )
            timings.record_since("checkpoint", start, cpu, detail)
        return int(row[1])

    def _migrate(self) -> None:
        with self._write_transaction() as conn:
            _alembic_upgrade(conn)

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        """A transaction on the writer's own connection; writer thread only.

        The connection stays checked out between transactions: taking it from the pool
        and giving it back (with the pool's rollback on return) cost about as much Python
        as a small group commit's statements. After any failure it is closed and the next
        transaction opens a fresh one, as the pool would have, so a broken connection
        cannot outlive the batch that found it broken.
        """
        conn = self._writer_connection()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._close_write_conn()
            raise

    def _writer_connection(self) -> Connection:
        """The writer's held connection, opened if there is none; writer thread only."""
        if self._write_conn is None:
            self._write_conn = self._sync_engine.connect()
        return self._write_conn

    def _close_write_conn(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # the pool invalidates what it cannot reset
                conn.close()

    def _configure_sqlite(
        self, engine: Engine, begin: str, cache_kib: int = 2_000, autocheckpoint: int = 1_000
    ) -> None:
        synchronous = self._synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Straight on the driver: through exec_driver_sql this statement cost as much
            # Python as a small batch's inserts.
            # (The DBAPI cursor: on the async read engine it is aiosqlite's adapter.)
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(begin)
            cursor.close()

    async def _in_writer(self, work: Callable[[], T]) -> T:
        """Run ``work`` in the writer thread: every write transaction goes through it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        await self._writer.close()
        if self._pipelined is not None:
            await self._pipelined.close()
        if self._search_index is not None:
            await self._search_index.close()
            self._search_index = None
        await self._in_writer(self._close_write_conn)
        await self._in_writer(self._sync_engine.dispose)
        self._executor.shutdown(wait=True)
        await self._read_engine.dispose()
        if self._checkpoint_executor is not None:
            self._checkpoint_executor.shutdown(wait=True)
        if self._sync_reads is not None and self._read_executor is not None:
            self._read_executor.shutdown(wait=True)
            self._sync_reads.dispose()
        if self._db_fd is not None:  # every SQLite connection is closed by now
            os.close(self._db_fd)
            self._db_fd = None
        if self._tempdir is not None:
            self._tempdir.cleanup()

    async def ping(self) -> bool:
        try:
            async with self._read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # health check: any failure means "not healthy"
            log.exception("store ping failed")
            return False
        return True

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._listener = listener

    @property
    def write_stats(self) -> tuple[int, int, int]:
        """(batches committed, commands committed, commands waiting)."""
        return self._writer.batches, self._writer.items, self._writer.pending

    # -- writes ----------------------------------------------------------------
    async def commit(self, command: WriteCommand) -> RoomEvent | None:
        return await self._writer.submit(command)

    def commit_nowait(self, command: WriteCommand) -> asyncio.Future[RoomEvent | None]:
        return self._writer.submit_nowait(command)

    def _apply_batch_timed(self, commands: list[WriteCommand]) -> list[Outcome]:
        """:meth:`_apply_batch`, logged as a ``commit`` in the timings log."""
        assert self._timings is not None
        start, cpu = time.monotonic_ns(), time.thread_time_ns()
        try:
            return self._apply_batch(commands)
        finally:
            self._timings.record_since("commit", start, cpu, f"n={len(commands)}")

    def _apply_batch(self, commands: list[WriteCommand]) -> list[Outcome]:
        """Commit ``commands`` in the writer thread. On SQLite, posts to rooms whose
        counters this node knows are numbered from them; PostgreSQL has tried that from
        the loop already (:meth:`_commit_planned`)."""
        plan = self._applier.plan_known(commands) if self._pipelined is None else None
        if plan is not None:
            try:
                return self._apply_batch_once(commands, plan)
            except self._integrity_errors as exc:
                # Refused (nothing of it was kept): the long path reads the counters, and
                # tells which command was a duplicate.
                self._applier.refused(exc, plan.rooms)
        return self._apply_batch_once(commands, None)

    @property
    def _integrity_errors(self) -> tuple[type[Exception], ...]:
        # The hot statements run on the driver's cursor (bulk.py), so a unique-key
        # violation arrives as the driver's own IntegrityError, not SQLAlchemy's.
        return (IntegrityError, self._sync_engine.dialect.loaded_dbapi.IntegrityError)

    def _apply_batch_once(
        self, commands: list[WriteCommand], plan: KnownPlan | None
    ) -> list[Outcome]:
        counters = self._applier.counters
        try:
            with self._write_transaction() as conn:
                if plan is None:
                    outcomes = self._applier.apply(conn, commands)
                else:
                    self._applier.store_plan(conn, plan)
                    outcomes = plan.outcomes
        except self._integrity_errors as exc:
            counters.discard()
            if plan is None and len(commands) == 1:
                # Unique keys guard idempotent sends and event numbering.
                raise ChatError(ErrorCode.CONFLICT, "conflicts with a stored record") from exc
            raise
        except BaseException:
            counters.discard()
            raise
        counters.committed()
        return outcomes

    async def _commit_planned(
        self, pipelined: PipelinedCommitter, commands: list[WriteCommand]
    ) -> list[Outcome] | None:
        """PostgreSQL: commit a batch of posts to known rooms from the loop (pipelined.py).

        None if the batch is not such a batch, or was refused (a counter had moved, a
        client id was stored before): the writer thread then runs it the long way.
        """
        plan = self._applier.plan_known(commands)
        if plan is None:
            return None
        counters = self._applier.counters
        try:
            await pipelined.commit(plan.statements)
        except self._integrity_errors as exc:
            self._applier.refused(exc, plan.rooms)
            return None
        except BaseException:
            counters.discard()
            raise
        counters.committed()
        return plan.outcomes

    async def _run_batch(self, commands: list[WriteCommand]) -> list[Outcome]:
        timings = self._timings
        if timings is not None:
            start = time.monotonic_ns()
        pipelined = self._pipelined
        outcomes = await self._commit_planned(pipelined, commands) if pipelined else None
        if outcomes is None:
            apply = self._apply_batch if timings is None else self._apply_batch_timed
            outcomes = await self._in_writer(lambda: apply(commands))
        if timings is not None:
            committed_at = time.monotonic_ns()
        committed = [o for o in outcomes if isinstance(o, RoomEvent)]
        if committed:
            try:
                self._listener(committed)
            except Exception:  # fan-out failure must not un-acknowledge a durable write
                log.exception("commit listener failed")
        if timings is not None:
            end = time.monotonic_ns()
            detail = f"n={len(commands)} fanout_us={(end - committed_at) // 1000}"
            timings.record("batch", start, end - start, None, detail)
        return outcomes

    async def create_room(
        self, room: Room, members: Sequence[Member], dm_key: str | None
    ) -> RoomEvent:
        joined = sum(1 for m in members if m.state is MembershipState.JOINED)
        data = {
            "room": room_view(replace(room, last_seq=1, member_count=joined)),
            "members": [member_view(m) for m in members],
        }
        data_json = orjson.dumps(data)

        def work() -> None:
            with self._write_transaction() as conn:
                conn.execute(
                    insert(t.rooms).values(
                        id=room.id,
                        type=room.type.value,
                        name=room.name,
                        description=room.description,
                        created_by=room.created_by,
                        is_private=room.settings.is_private,
                        settings=settings_to_json(room.settings),
                        metadata=dumps(room.metadata),
                        created_at=to_ms(room.created_at),
                        updated_at=None,
                        last_seq=1,
                        member_count=joined,
                        dm_key=dm_key,
                    )
                )
                if members:
                    conn.execute(insert(t.memberships), [member_row(m) for m in members])
                conn.execute(
                    insert(t.room_events).values(
                        room_id=room.id,
                        seq=1,
                        type=EventType.ROOM_CREATED.value,
                        data=data_json.decode(),
                        actor_id=room.created_by,
                        message_id=None,
                        created_at=to_ms(room.created_at),
                    )
                )

        try:
            await self._in_writer(work)
        except IntegrityError as exc:
            raise ChatError(ErrorCode.CONFLICT, "that room already exists") from exc
        return RoomEvent(
            room_id=room.id,
            seq=1,
            type=EventType.ROOM_CREATED,
            data=data,
            frame=room_event_frame(EventType.ROOM_CREATED.value, room.id, 1, data_json),
            actor_id=room.created_by,
        )

    async def mark_read(self, room_id: str, user_id: str, seq: int) -> int:
        key = and_(t.memberships.c.room_id == room_id, t.memberships.c.user_id == user_id)

        def work() -> Any:
            with self._write_transaction() as conn:
                conn.execute(
                    update(t.memberships)
                    .where(and_(key, t.memberships.c.last_read_seq < seq))
                    .values(last_read_seq=seq)
                )
                return conn.execute(select(t.memberships.c.last_read_seq).where(key)).scalar()

        stored = await self._in_writer(work)
        if stored is None:
            raise not_a_member(room_id)
        return int(stored)

    # -- reads -----------------------------------------------------------------
    def _read_sync(self, query: Any, first: bool, params: dict[str, Any] | None = None) -> Any:
        assert self._sync_reads is not None
        with self._sync_reads.connect() as conn:
            rows = conn.execute(query, params).mappings()
            return rows.first() if first else list(rows.all())

    def _user_room_ids_sync(self, user_id: str) -> list[str]:
        assert self._sync_reads is not None
        with self._sync_reads.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(_USER_ROOM_IDS, (user_id, MembershipState.JOINED.value))
                return [room_id for (room_id,) in cursor.fetchall()]
            finally:
                cursor.close()

    async def _one(self, query: Any, params: dict[str, Any] | None = None) -> Any:
        if self._read_executor is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._read_executor, self._read_sync, query, True, params
            )
        async with self._read_engine.connect() as conn:
            return (await conn.execute(query, params)).mappings().first()

    async def _all(self, query: Any, params: dict[str, Any] | None = None) -> list[Any]:
        if self._read_executor is not None:
            rows: list[Any] = await asyncio.get_running_loop().run_in_executor(
                self._read_executor, self._read_sync, query, False, params
            )
            return rows
        async with self._read_engine.connect() as conn:
            return list((await conn.execute(query, params)).mappings().all())

    async def get_room(self, room_id: str) -> Room | None:
        row = await self._one(_GET_ROOM, {"room_id": room_id})
        return room_from_row(row) if row else None

    async def find_dm(self, dm_key: str) -> Room | None:
        row = await self._one(select(t.rooms).where(t.rooms.c.dm_key == dm_key))
        return room_from_row(row) if row else None

    async def list_public_rooms(self, limit: int, offset: int, query: str | None) -> list[Room]:
        stmt = select(t.rooms).where(t.rooms.c.is_private.is_(False))
        if query:
            stmt = stmt.where(t.rooms.c.name.ilike(f"%{_escape_like(query)}%", escape="\\"))
        stmt = stmt.order_by(t.rooms.c.member_count.desc(), t.rooms.c.created_at.desc())
        return [room_from_row(r) for r in await self._all(stmt.limit(limit).offset(offset))]

    async def list_user_rooms(self, user_id: str) -> list[RoomSummary]:
        m, msg, men = t.memberships, t.messages, t.mentions
        unread = (
            select(func.count())
            .where(
                msg.c.room_id == m.c.room_id,
                msg.c.seq > m.c.last_read_seq,
                msg.c.sender_id != user_id,
                msg.c.status != MessageStatus.DELETED.value,
            )
            .scalar_subquery()
        )
        unread_mentions = (
            select(func.count())
            .where(
                men.c.room_id == m.c.room_id,
                men.c.user_id == user_id,
                men.c.seq > m.c.last_read_seq,
            )
            .scalar_subquery()
        )
        stmt = (
            select(
                t.rooms,
                m.c.role,
                m.c.state,
                m.c.joined_at,
                m.c.invited_by,
                m.c.last_read_seq,
                m.c.user_id,
                m.c.room_id,
                unread.label("unread"),
                unread_mentions.label("unread_mentions"),
            )
            .join(m, m.c.room_id == t.rooms.c.id)
            .where(m.c.user_id == user_id)
            .order_by(t.rooms.c.last_seq.desc())
        )
        return [
            RoomSummary(
                room=room_from_row(r),
                member=member_from_row(r),
                unread_count=r["unread"],
                unread_mentions=r["unread_mentions"],
            )
            for r in await self._all(stmt)
        ]

    async def get_member(self, room_id: str, user_id: str) -> Member | None:
        row = await self._one(_GET_MEMBER, {"room_id": room_id, "user_id": user_id})
        return member_from_row(row) if row else None

    async def list_members(self, room_id: str) -> list[Member]:
        rows = await self._all(
            select(t.memberships)
            .where(t.memberships.c.room_id == room_id)
            .order_by(t.memberships.c.joined_at)
        )
        return [member_from_row(r) for r in rows]

    async def user_room_ids(self, user_id: str) -> list[str]:
        if self._read_executor is not None:
            # Every first connect of a user asks this (presence): on SQLite it is plain
            # SQL on the reader's own cursor, without building a Core statement each time.
            return await asyncio.get_running_loop().run_in_executor(
                self._read_executor, self._user_room_ids_sync, user_id
            )
        rows = await self._all(
            select(t.memberships.c.room_id).where(
                and_(
                    t.memberships.c.user_id == user_id,
                    t.memberships.c.state == MembershipState.JOINED.value,
                )
            )
        )
        return [r["room_id"] for r in rows]

    async def _with_reactions(self, rows: list[Any]) -> list[Message]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        reaction_rows = await self._all(
            select(t.reactions.c.message_id, t.reactions.c.emoji, t.reactions.c.user_id)
            .where(t.reactions.c.message_id.in_(ids))
            .order_by(t.reactions.c.created_at)
        )
        grouped: dict[str, dict[str, list[str]]] = defaultdict(dict)
        for r in reaction_rows:
            grouped[r["message_id"]].setdefault(r["emoji"], []).append(r["user_id"])
        return [
            message_from_row(
                row,
                tuple(Reaction(e, tuple(users)) for e, users in grouped.get(row["id"], {}).items()),
            )
            for row in rows
        ]

    async def get_message(self, message_id: str) -> Message | None:
        row = await self._one(select(t.messages).where(t.messages.c.id == message_id))
        return (await self._with_reactions([row]))[0] if row else None

    async def find_by_client_id(
        self, room_id: str, sender_id: str, client_message_id: str
    ) -> Message | None:
        row = await self._one(
            select(t.messages).where(
                and_(
                    t.messages.c.room_id == room_id,
                    t.messages.c.sender_id == sender_id,
                    t.messages.c.client_message_id == client_message_id,
                )
            )
        )
        return (await self._with_reactions([row]))[0] if row else None

    async def history(
        self, room_id: str, before: int | None, after: int | None, limit: int
    ) -> list[Message]:
        stmt = select(t.messages).where(t.messages.c.room_id == room_id)
        if after is not None:
            stmt = stmt.where(t.messages.c.seq > after)
        if before is not None:
            stmt = stmt.where(t.messages.c.seq < before)
        if after is not None and before is None:
            rows = await self._all(stmt.order_by(t.messages.c.seq).limit(limit))
        else:
            rows = await self._all(stmt.order_by(t.messages.c.seq.desc()).limit(limit))
            rows.reverse()
        return await self._with_reactions(rows)

    async def thread(self, message_id: str, limit: int) -> list[Message]:
        rows = await self._all(
            select(t.messages)
            .where(t.messages.c.reply_to == message_id)
            .order_by(t.messages.c.seq)
            .limit(limit)
        )
        return await self._with_reactions(rows)

    async def search(self, room_id: str, query: str, limit: int) -> list[Message]:
        terms = search_words(query)  # as search_text was folded; no operator survives
        if not terms:
            return []
        if self.dialect == "sqlite":
            if self._search_index is None:
                raise ChatError(ErrorCode.SERVICE_UNAVAILABLE, "the store is not open")
            pks = await self._search_index.search(room_id, terms, limit)
            if not pks:
                return []
            stmt = (
                select(t.messages).where(t.messages.c.pk.in_(pks)).order_by(t.messages.c.seq.desc())
            )
        else:
            stmt = (
                select(t.messages)
                .where(t.messages.c.room_id == room_id)
                .where(
                    text(
                        "to_tsvector('simple', coalesce(search_text, '')) @@ "
                        "plainto_tsquery('simple', :query)"
                    ).bindparams(query=" ".join(terms))
                )
                .order_by(t.messages.c.seq.desc())
                .limit(limit)
            )
        return await self._with_reactions(await self._all(stmt))

    async def edit_history(self, message_id: str) -> list[MessageEdit]:
        rows = await self._all(
            select(t.message_edits)
            .where(t.message_edits.c.message_id == message_id)
            .order_by(t.message_edits.c.pk)
        )
        return [
            MessageEdit(
                message_id=r["message_id"],
                content=orjson.loads(r["content"]),
                edited_at=from_ms_required(r["edited_at"]),
                edited_by=r["edited_by"],
            )
            for r in rows
        ]

    async def events_after(self, room_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        rows = await self._all(LOG_AFTER, log_after_params(room_id, after_seq, limit))
        return [stored_event(room_id, r) for r in rows]

    async def unread_count(self, room_id: str, user_id: str) -> tuple[int, int]:
        member = await self.get_member(room_id, user_id)
        if member is None:
            return 0, 0
        async with self._read_engine.connect() as conn:
            unread = (
                await conn.execute(
                    select(func.count()).where(
                        t.messages.c.room_id == room_id,
                        t.messages.c.seq > member.last_read_seq,
                        t.messages.c.sender_id != user_id,
                        t.messages.c.status != MessageStatus.DELETED.value,
                    )
                )
            ).scalar_one()
            mentions = (
                await conn.execute(
                    select(func.count()).where(
                        t.mentions.c.room_id == room_id,
                        t.mentions.c.user_id == user_id,
                        t.mentions.c.seq > member.last_read_seq,
                    )
                )
            ).scalar_one()
        return int(unread), int(mentions)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
