"""Who may recruit to a trial, with the stage evidence, and what every other provider lacks.

*Eligible* means exactly :func:`models.credentials.credentialed_for_trial` (the API's
``/api/v1/trials/{code}/eligible-providers``): the provider's trial credential is ``credentialed``. The evidence
shown for a provider is the stages of its credentials for the techniques the trial requires, then the stages only
that trial requires. What a provider lacks: each required technique it is not credentialed for, with that
technique credential's outstanding stages (``"sabr_lung: pending"``, ``"sabr_lung planning benchmark: failed
(...)"``), then each stage only the trial requires that has not passed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models.credentials import credentialed_for_trial
from models.enums import CredentialStatus
from models.stages import required_stages
from models.tables import Credential, Network, Provider, Technique, Trial, TrialRequirement
from portal.credential_cells import NOT_STARTED, StageLine, cell_from_credential, joined, ymd
from portal.exports import Cell, ExportTable


class UnknownTrialError(LookupError):
    """No trial has the code asked for."""


@dataclass(frozen=True)
class TrialSummary:
    """A trial, the techniques it requires and the stages only it requires, with provider counts by trial
    credential status."""

    code: str
    title: str
    protocol: str | None
    techniques: tuple[tuple[str, str], ...]
    """(code, name) of each technique the trial requires, by code."""
    trial_stages: tuple[str, ...]
    """Labels of the QA stages only this trial requires (beyond its techniques')."""
    eligible: int
    pending: int
    lapsed: int


@dataclass(frozen=True)
class TrialProviderRow:
    """One provider against one trial."""

    provider_code: str
    provider_name: str
    network_code: str
    network_name: str
    eligible: bool
    status: str
    """The trial credential's status, or ``not started`` without one."""
    valid_until: datetime | None
    evidence: tuple[tuple[str, StageLine], ...]
    """(technique code or ``"trial"``, stage) for every stage behind the trial credential."""
    outstanding: tuple[str, ...]

    @property
    def started(self) -> bool:
        """Whether the provider has any evidence for the trial yet."""
        return self.status != NOT_STARTED or any(s.case for _, s in self.evidence)

    @property
    def evidence_text(self) -> tuple[str, ...]:
        return tuple(f"{scope} {stage.text}" for scope, stage in self.evidence)


@dataclass(frozen=True)
class TrialEligibility:
    """Every provider against one trial: eligible ones first, then the others, each by network and name."""

    trial: TrialSummary
    rows: tuple[TrialProviderRow, ...]

    @property
    def eligible(self) -> list[TrialProviderRow]:
        return [r for r in self.rows if r.eligible]

    @property
    def not_eligible(self) -> list[TrialProviderRow]:
        """Providers with some evidence but not eligible."""
        return [r for r in self.rows if not r.eligible and r.started]

    @property
    def not_started(self) -> list[TrialProviderRow]:
        return [r for r in self.rows if not r.eligible and not r.started]

    def export(self, now: datetime) -> ExportTable:
        """One row per provider (every provider): eligibility, trial credential status and validity, the stage
        evidence and what is outstanding."""
        columns = (
            "trial", "provider", "provider_name", "network", "eligible", "status", "valid_until", "evidence",
            "outstanding",
        )  # fmt: skip
        rows: list[dict[str, Cell]] = [
            {
                "trial": self.trial.code,
                "provider": r.provider_code,
                "provider_name": r.provider_name,
                "network": r.network_code,
                "eligible": "yes" if r.eligible else "no",
                "status": r.status,
                "valid_until": ymd(r.valid_until) or None,
                "evidence": joined(r.evidence_text) or None,
                "outstanding": joined(r.outstanding) or None,
            }
            for r in self.rows
        ]
        return ExportTable(
            filename=f"rtqa-trial-{self.trial.code}-{ymd(now)}",
            columns=columns,
            rows=tuple(rows),
            meta={
                "trial": {"code": self.trial.code, "title": self.trial.title, "protocol": self.trial.protocol},
                "requires": [code for code, _ in self.trial.techniques],
                "generated_at": now.isoformat(),
            },
        )


def _find(session: Session, code: str) -> Trial:
    trial = session.exec(select(Trial).where(Trial.code == code)).first()
    if trial is None or trial.id is None:
        raise UnknownTrialError(f"no trial with code {code!r}")
    return trial


def _techniques(session: Session, trial: Trial) -> list[Technique]:
    return list(
        session.exec(
            select(Technique)
            .where(TrialRequirement.trial_id == trial.id, TrialRequirement.technique_id == Technique.id)
            .order_by(Technique.code)
        ).all()
    )


def _summary(session: Session, trial: Trial, techniques: list[Technique], statuses: Counter[str]) -> TrialSummary:
    trial_stages = [
        description or stage.label
        for t in techniques
        for stage, description in required_stages(session, technique_id=t.id or 0, trial_id=trial.id)
    ]
    return TrialSummary(
        code=trial.code,
        title=trial.title,
        protocol=trial.protocol_id,
        techniques=tuple((t.code, t.name) for t in techniques),
        trial_stages=tuple(trial_stages),
        eligible=statuses[CredentialStatus.CREDENTIALED.value],
        pending=statuses[CredentialStatus.PENDING.value],
        lapsed=statuses[CredentialStatus.LAPSED.value],
    )


def trial_summaries(session: Session) -> list[TrialSummary]:
    """Every trial by code, with its requirements and counts."""
    out = []
    for trial in session.exec(select(Trial).order_by(Trial.code)).all():
        creds = session.exec(select(Credential).where(Credential.trial_id == trial.id)).all()
        out.append(_summary(session, trial, _techniques(session, trial), Counter(c.status.value for c in creds)))
    return out


def trial_eligibility(session: Session, code: str) -> TrialEligibility:
    """Every provider against the trial ``code``.

    Raises:
        UnknownTrialError: no such trial.
    """
    trial = _find(session, code)
    techniques = _techniques(session, trial)
    tech_ids = [t.id for t in techniques]
    tech_creds: dict[tuple[int | None, int | None], Credential] = {
        (c.provider_id, c.technique_id): c
        for c in session.exec(select(Credential).where(col(Credential.technique_id).in_(tech_ids))).all()
    }
    trial_creds = {c.provider_id: c for c in session.exec(select(Credential).where(Credential.trial_id == trial.id))}
    eligible = {view.provider_code for view in credentialed_for_trial(session, trial)}
    summary = _summary(session, trial, techniques, Counter(c.status.value for c in trial_creds.values()))
    trial_only = [s for t in techniques for s in required_stages(session, technique_id=t.id or 0, trial_id=trial.id)]
    needs = {t.id: [d or s.label for s, d in required_stages(session, technique_id=t.id or 0)] for t in techniques}
    rows = []
    providers = session.exec(
        select(Provider, Network).where(Provider.network_id == Network.id).order_by(Network.name, Provider.name)
    ).all()
    for provider, network in providers:
        evidence: list[tuple[str, StageLine]] = []
        lacking: list[str] = []
        for t in techniques:
            cred = tech_creds.get((provider.id, t.id))
            if cred is None:
                lacking.append(f"{t.code}: not credentialed (no decided submission; needs {', '.join(needs[t.id])})")
                continue
            cell = cell_from_credential(t.code, cred)
            evidence += [(t.code, s) for s in cell.stages]
            if cred.status is not CredentialStatus.CREDENTIALED:
                lacking += [f"{t.code}: {cred.status.value}"] + [f"{t.code} {o}" for o in cell.outstanding]
        trial_cred = trial_creds.get(provider.id or 0)
        status, valid_until = NOT_STARTED, None
        if trial_cred is not None:
            cell = cell_from_credential(trial.code, trial_cred)
            evidence += [("trial", s) for s in cell.stages]
            lacking += [f"trial {s.text}" for s in cell.stages if not s.passed]
            status, valid_until = cell.status, cell.valid_until
        else:
            lacking += [f"trial {description or stage.label}: missing" for stage, description in trial_only]
        if not lacking and provider.code not in eligible:
            lacking.append("the trial credential has not been evaluated yet (`rtqa db init` re-evaluates it)")
        rows.append(
            TrialProviderRow(
                provider_code=provider.code,
                provider_name=provider.name,
                network_code=network.code,
                network_name=network.name,
                eligible=provider.code in eligible,
                status=status,
                valid_until=valid_until,
                evidence=tuple(evidence),
                outstanding=() if provider.code in eligible else tuple(lacking),
            )
        )
    rows.sort(key=lambda r: not r.eligible)  # stable: eligible first, each part by network and name
    return TrialEligibility(trial=summary, rows=tuple(rows))


__all__ = ["TrialEligibility", "TrialProviderRow", "TrialSummary", "UnknownTrialError", "trial_eligibility"]
