"""Column types shared by the tables: UTC datetimes, enums stored by value, mutable JSON."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones and hands back naive values, which are read as UTC.
    Writing a naive datetime is refused: its meaning is ambiguous.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} refused: give a timezone-aware time (UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def enum_column(enum_cls: type[enum.Enum], *, nullable: bool = False, index: bool = False, **kw: Any) -> sa.Column[Any]:
    """A column storing ``enum_cls`` by value (not by name), as a VARCHAR with a CHECK constraint."""
    return sa.Column(
        sa.Enum(
            enum_cls,
            native_enum=False,
            create_constraint=True,
            length=40,
            values_callable=lambda members: [m.value for m in members],
            name=f"{enum_cls.__name__.lower()}_enum",
            validate_strings=True,
        ),
        nullable=nullable,
        index=index,
        **kw,
    )


def json_dict_column(*, nullable: bool = False) -> sa.Column[Any]:
    """A JSON object column whose in-place changes are tracked."""
    return sa.Column(MutableDict.as_mutable(sa.JSON()), nullable=nullable)


def json_list_column(*, nullable: bool = False) -> sa.Column[Any]:
    """A JSON array column whose in-place changes are tracked."""
    return sa.Column(MutableList.as_mutable(sa.JSON()), nullable=nullable)


def utc_column(*, nullable: bool = False, index: bool = False) -> sa.Column[Any]:
    """A :class:`UTCDateTime` column."""
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)
