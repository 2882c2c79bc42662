"""Centres' DICOM application entity (AE) titles: registered to a provider, listed, removed; every change audited.

The DICOM receiver accepts an association only from a registered calling AE title and files what it receives
under that title's provider. An AE title (PS3.5 Table 6.2-1, VR AE) is 1 to 16 characters of the default
character repertoire without backslash or control characters; leading and trailing spaces are not significant
and are dropped here. Titles are compared exactly (case matters), as the DICOM upper layer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models.audit import record_audit
from models.tables import DicomAETitle, Provider

__all__ = [
    "AE_TITLE_MAX_CHARS",
    "AETitleError",
    "RegisteredAE",
    "add_ae_title",
    "list_ae_titles",
    "normalise_ae_title",
    "provider_for_ae_title",
    "registered_ae_titles",
    "remove_ae_title",
]

AE_TITLE_MAX_CHARS = 16
"""Longest AE title, in characters (PS3.5 Table 6.2-1)."""


class AETitleError(ValueError):
    """An AE title is malformed, already registered, or not registered (the message says what to do)."""


@dataclass(frozen=True)
class RegisteredAE:
    """A registered calling AE title and the provider it belongs to."""

    ae_title: str
    provider_code: str
    provider_name: str
    created_by: str
    created_at: datetime


def normalise_ae_title(text: str) -> str:
    """``text`` without leading and trailing spaces, checked as an AE title.

    Raises:
        AETitleError: empty, longer than :data:`AE_TITLE_MAX_CHARS`, or holding a backslash, a control character or
            a character outside ASCII (the message shows the value).
    """
    title = text.strip(" ")
    if not title:
        raise AETitleError(f"AE title {text!r} is empty; give 1 to {AE_TITLE_MAX_CHARS} characters")
    if len(title) > AE_TITLE_MAX_CHARS:
        raise AETitleError(
            f"AE title {title!r} has {len(title)} characters, more than {AE_TITLE_MAX_CHARS}; use the title the "
            "planning system sends (its calling AE title)"
        )
    bad = sorted({c for c in title if c == "\\" or not (" " <= c <= "~")})
    if bad:
        raise AETitleError(
            f"AE title {title!r} holds {', '.join(repr(c) for c in bad)}; AE titles are printable ASCII without "
            "backslash"
        )
    return title


def _provider(session: Session, code: str) -> Provider:
    provider = session.exec(select(Provider).where(Provider.code == code)).first()
    if provider is None:
        raise AETitleError(f"unknown provider code {code!r}; `rtqa providers` lists the codes")
    return provider


def add_ae_title(session: Session, *, ae_title: str, provider_code: str, actor: str) -> DicomAETitle:
    """Register ``ae_title`` to the provider ``provider_code`` and audit it; the caller commits.

    Raises:
        AETitleError: malformed title, unknown provider, or the title is already registered (to which provider).
    """
    title = normalise_ae_title(ae_title)
    provider = _provider(session, provider_code)
    existing = session.exec(select(DicomAETitle).where(DicomAETitle.ae_title == title)).first()
    if existing is not None:
        owner = session.get(Provider, existing.provider_id)
        owner_code = owner.code if owner is not None else str(existing.provider_id)
        raise AETitleError(
            f"AE title {title!r} is already registered to {owner_code}; remove it first (`rtqa dicom ae remove "
            f"{title}`) if it moved"
        )
    assert provider.id is not None
    row = DicomAETitle(ae_title=title, provider_id=provider.id, created_by=actor)
    session.add(row)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="dicom_ae.added",
        subject_type="dicom_ae_title",
        subject_id=row.id or 0,
        after={"ae_title": title, "provider": provider.code},
    )
    return row


def remove_ae_title(session: Session, *, ae_title: str, actor: str) -> str:
    """Remove a registered AE title and audit it; returns the provider code it belonged to. The caller commits.

    Raises:
        AETitleError: the title is not registered.
    """
    title = normalise_ae_title(ae_title)
    row = session.exec(select(DicomAETitle).where(DicomAETitle.ae_title == title)).first()
    if row is None:
        raise AETitleError(f"AE title {title!r} is not registered; `rtqa dicom ae list` shows the registered titles")
    provider = session.get(Provider, row.provider_id)
    code = provider.code if provider is not None else str(row.provider_id)
    record_audit(
        session,
        actor=actor,
        action="dicom_ae.removed",
        subject_type="dicom_ae_title",
        subject_id=row.id or 0,
        before={"ae_title": title, "provider": code},
    )
    session.delete(row)
    return code


def list_ae_titles(session: Session, *, provider_code: str | None = None) -> list[RegisteredAE]:
    """Registered AE titles, by provider code then title; only ``provider_code``'s when given."""
    query = select(DicomAETitle, Provider).where(DicomAETitle.provider_id == Provider.id)
    if provider_code is not None:
        query = query.where(Provider.code == _provider(session, provider_code).code)
    rows = session.exec(query.order_by(col(Provider.code), col(DicomAETitle.ae_title))).all()
    return [RegisteredAE(ae.ae_title, p.code, p.name, ae.created_by, ae.created_at) for ae, p in rows]


def registered_ae_titles(session: Session) -> list[str]:
    """Every registered calling AE title."""
    return list(session.exec(select(DicomAETitle.ae_title).order_by(col(DicomAETitle.ae_title))).all())


def provider_for_ae_title(session: Session, ae_title: str) -> Provider | None:
    """The provider a calling AE title is registered to (padding spaces ignored), or None."""
    title = ae_title.strip(" ")
    return session.exec(
        select(Provider).where(DicomAETitle.provider_id == Provider.id, DicomAETitle.ae_title == title)
    ).first()
