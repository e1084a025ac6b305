"""A room's event log as resume replays it: ``room_events`` and ``messages``, merged.

A new message is stored once, as its ``messages`` row under the room's ``seq``; every
other event is a ``room_events`` row holding its wire ``data``. The page after a seq is
one ``UNION ALL`` statement, so both tables are read in one snapshot: two reads could
see a commit between them and leave a gap in the replay.

The ``new_message`` frame is rebuilt as it was committed, byte for byte: the row as
posted, with no reactions, no replies counted and no ``updatedAt`` (those arrive as
their own events after it). An edited message is replayed with its original content,
the first ``message_edits`` row (each edit keeps the content it replaced), since the
``message_edited`` events that follow carry the rest. A deleted message's row holds
no content any more, so its replay carries none: what deleting scrubbed from the log
before the message was stored once.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.sql import Select, Subquery

from ...domain.events import EventType
from ...domain.messages import Message, MessageStatus, MessageType, mentions_in
from ...ports.store import StoredEvent
from ...protocol.codec import room_event_frame
from ...protocol.views import message_view
from . import schema as t
from .codec import from_ms_required

_NEW_MESSAGE = EventType.NEW_MESSAGE.value
_EDITED = MessageStatus.EDITED.value


def _log_after_statement() -> Select[Any]:
    """The page query, built once with ``:room_id``, ``:after_seq`` and ``:limit``.

    A Core statement is a graph of objects full of reference cycles. Built per call,
    this one left ~600 objects for the cycle collector at every join and resume: at a
    thousand joins that was most of the garbage behind 60-100 ms collections.
    """
    events = t.room_events
    messages = t.messages
    edits = t.message_edits
    room_id = bindparam("room_id", type_=String)
    after_seq = bindparam("after_seq", type_=Integer)
    limit = bindparam("limit", type_=Integer)
    first_edit = (
        select(edits.c.content)
        .where(edits.c.message_id == messages.c.id)
        .order_by(edits.c.pk)
        .limit(1)
        .scalar_subquery()
    )

    def page_of(query: Select[Any], table: Table) -> Subquery:
        # Each side is limited first, so a long log costs at most twice the page.
        where = and_(table.c.room_id == room_id, table.c.seq > after_seq)
        return query.where(where).order_by(table.c.seq).limit(limit).subquery()

    message_columns = (
        messages.c.id,
        messages.c.sender_id,
        messages.c.type.label("message_type"),
        messages.c.content,
        case((messages.c.status == _EDITED, first_edit), else_=null()).label("original"),
        messages.c.metadata,
        messages.c.reply_to,
        messages.c.mentions,
        messages.c.client_message_id,
        messages.c.status,
        messages.c.created_at,
    )
    posted = page_of(
        select(
            messages.c.seq,
            literal(_NEW_MESSAGE, String).label("type"),
            null().cast(Text).label("data"),
            *message_columns,
        ),
        messages,
    )
    # The room_events side fills the message's columns with NULLs of the same types.
    logged = page_of(
        select(
            events.c.seq,
            events.c.type,
            events.c.data,
            *(null().cast(c.type).label(c.name) for c in message_columns),
        ),
        events,
    )
    both = union_all(select(logged), select(posted)).subquery()
    return select(both).order_by(both.c.seq).limit(limit)


LOG_AFTER = _log_after_statement()


def log_after_params(room_id: str, after_seq: int, limit: int) -> dict[str, Any]:
    """Parameters of :data:`LOG_AFTER`: the room's first ``limit`` events after ``after_seq``."""
    return {"room_id": room_id, "after_seq": after_seq, "limit": limit}


def stored_event(room_id: str, row: Any) -> StoredEvent:
    """One replayed event from a row of :data:`LOG_AFTER`."""
    seq, kind = row["seq"], row["type"]
    data = row["data"].encode() if row["data"] is not None else _posted_data(room_id, row)
    return StoredEvent(room_id, seq, kind, room_event_frame(kind, room_id, seq, data))


def _posted_data(room_id: str, row: Any) -> bytes:
    """The ``new_message`` data exactly as it was committed (see the module docstring)."""
    status = MessageStatus(row["status"])
    content = orjson.loads(row["content"])
    mentions = tuple(orjson.loads(row["mentions"]))
    if status is MessageStatus.EDITED and row["original"] is not None:
        # As posted: the service takes a message's mentions from its text, and a post is
        # always stored as sent (a status set on posting would need a column of its own).
        content = orjson.loads(row["original"])
        mentions = mentions_in(content)
        status = MessageStatus.SENT
    message = Message(
        id=row["id"],
        room_id=room_id,
        seq=row["seq"],
        sender_id=row["sender_id"],
        type=MessageType(row["message_type"]),
        content=content,
        metadata=orjson.loads(row["metadata"]),
        reply_to=row["reply_to"],
        mentions=mentions,
        client_message_id=row["client_message_id"],
        status=status,
        created_at=from_ms_required(row["created_at"]),
    )
    return orjson.dumps(message_view(message))
