"""The rtqa database tables.

Who is who (networks, providers), what is credentialed (techniques, trials and their requirements), the benchmark
cases, centre submissions with their metric results and outcomes, the credentials those outcomes grant, the
append-only audit trail, and users with their API tokens.

Conventions: every time is timezone-aware UTC (:class:`models.types.UTCDateTime`); enums are stored by value as
VARCHAR with a CHECK constraint; every metric result stores its unit and the parameters that produced it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.enums import (
    CredentialStatus,
    OutcomeLevel,
    OutcomeSource,
    QAStage,
    Role,
    ScoringTrigger,
    SubmissionStatus,
    TechniqueFamily,
)
from models.types import UTCDateTime, enum_column, json_dict_column, json_list_column, utc_column, utcnow

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata


# --- who is who -----------------------------------------------------------------------------------------------


class Network(SQLModel, table=True):
    """A radiotherapy operational delivery network (11 in England since April 2019)."""

    __tablename__ = "network"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, description="Stable slug, e.g. 'east-midlands'.")
    name: str = Field(max_length=200, unique=True)


class CancerAlliance(SQLModel, table=True):
    """A cancer alliance served by a radiotherapy network."""

    __tablename__ = "cancer_alliance"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    network_id: int = Field(foreign_key="network.id", index=True)


class Provider(SQLModel, table=True):
    """An NHS radiotherapy provider (trust); belongs to exactly one network."""

    __tablename__ = "provider"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, description="Stable slug used in URLs and the CLI.")
    name: str = Field(max_length=200, unique=True)
    ods_code: str | None = Field(default=None, max_length=10, unique=True, description="NHS ODS code, if known.")
    network_id: int = Field(foreign_key="network.id", index=True)


# --- what is credentialed -------------------------------------------------------------------------------------


class Technique(SQLModel, table=True):
    """A credentialable technique: SABR by anatomical site, or SRS brain."""

    __tablename__ = "technique"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, description="e.g. 'sabr_lung', 'srs_brain'.")
    name: str = Field(max_length=200)
    family: TechniqueFamily = Field(sa_column=enum_column(TechniqueFamily))
    site: str = Field(max_length=64)


class Trial(SQLModel, table=True):
    """A clinical trial with a radiotherapy component."""

    __tablename__ = "trial"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    title: str = Field(max_length=500)
    protocol_id: str | None = Field(default=None, max_length=64, description="Protocol file that scores it.")


class TrialRequirement(SQLModel, table=True):
    """A credential a trial requires: a technique, optionally through a given QA stage."""

    __tablename__ = "trial_requirement"
    __table_args__ = (sa.UniqueConstraint("trial_id", "technique_id"),)

    id: int | None = Field(default=None, primary_key=True)
    trial_id: int = Field(foreign_key="trial.id", index=True)
    technique_id: int = Field(foreign_key="technique.id", index=True)


class StageRequirement(SQLModel, table=True):
    """A QA stage a credential needs, as a protocol lists it: for a technique, or for one trial only.

    A technique credential (``trial_id`` NULL) is granted while every stage required for its technique has a
    passing, current outcome; a trial credential needs its techniques plus the stages required for that trial.
    """

    __tablename__ = "stage_requirement"
    __table_args__ = (sa.UniqueConstraint("technique_id", "trial_id", "stage"),)

    id: int | None = Field(default=None, primary_key=True)
    technique_id: int = Field(foreign_key="technique.id", index=True)
    trial_id: int | None = Field(default=None, foreign_key="trial.id", index=True)
    stage: QAStage = Field(sa_column=enum_column(QAStage))
    protocol_id: str = Field(max_length=64, description="The protocol that lists the requirement.")
    description: str = Field(default="", max_length=300)


class BenchmarkCase(SQLModel, table=True):
    """A versioned benchmark case; its reference files are identified by their content hash."""

    __tablename__ = "benchmark_case"
    __table_args__ = (sa.UniqueConstraint("case_code", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    case_code: str = Field(max_length=100, index=True)
    version: str = Field(max_length=32)
    title: str = Field(max_length=300)
    technique_id: int = Field(foreign_key="technique.id", index=True)
    stage: QAStage = Field(sa_column=enum_column(QAStage))
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    reference_sha256: str = Field(max_length=64, min_length=64)
    reference_path: str = Field(max_length=1000, description="Directory holding the reference DICOM files.")
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


# --- submissions and their results ----------------------------------------------------------------------------


class Submission(SQLModel, table=True):
    """One attempt by a provider at a benchmark case.

    Re-ingesting the same files (same provider, case and content sha256) finds the existing row instead of adding
    another; a changed upload is a new attempt.
    """

    __tablename__ = "submission"
    __table_args__ = (
        sa.UniqueConstraint("provider_id", "case_id", "content_sha256"),
        sa.UniqueConstraint("provider_id", "case_id", "attempt"),
        sa.CheckConstraint("attempt >= 1", name="attempt_positive"),
        sa.CheckConstraint("(status = 'rejected') = (rejection_reason IS NOT NULL)", name="rejected_has_reason"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider_id: int = Field(foreign_key="provider.id", index=True)
    case_id: int = Field(foreign_key="benchmark_case.id", index=True)
    attempt: int
    content_sha256: str = Field(max_length=64, min_length=64)
    status: SubmissionStatus = Field(sa_column=enum_column(SubmissionStatus, index=True))
    rejection_reason: str | None = Field(default=None, max_length=4000)
    storage_path: str = Field(max_length=1000)
    submitted_by: str = Field(max_length=200, description="Actor who uploaded (user e-mail or system name).")
    flow_run_id: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


class _ResultColumns(SQLModel):
    """Columns shared by metric results: the value, its unit and the parameters that produced it."""

    metric: str = Field(max_length=64)
    value: float | None = Field(default=None, description="None when the metric is undefined (e.g. empty mask).")
    unit: str = Field(max_length=16, description="'1' for dimensionless, 'mm', 'Gy', '%', 'cc'.")
    computed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class StructureResult(_ResultColumns, table=True):
    """A contour metric for one structure of a submission against the reference, from one scoring run."""

    __tablename__ = "structure_result"
    __table_args__ = (sa.UniqueConstraint("scoring_run_id", "structure", "metric"),)

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    scoring_run_id: int = Field(foreign_key="scoring_run.id", index=True)
    structure: str = Field(max_length=64, description="TG-263 name.")
    submitted_name: str | None = Field(default=None, max_length=200, description="Name as the centre wrote it.")
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=json_dict_column())


class DoseResult(_ResultColumns, table=True):
    """A dose comparison metric (e.g. gamma pass rate) of a submission, from one scoring run."""

    __tablename__ = "dose_result"
    __table_args__ = (sa.UniqueConstraint("scoring_run_id", "metric"),)

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    scoring_run_id: int = Field(foreign_key="scoring_run.id", index=True)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=json_dict_column())


class PlanResult(_ResultColumns, table=True):
    """A plan quality metric (DVH point, conformity or gradient index), optionally for one structure, from one
    scoring run."""

    __tablename__ = "plan_result"
    __table_args__ = (sa.UniqueConstraint("scoring_run_id", "structure", "metric"),)

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    scoring_run_id: int = Field(foreign_key="scoring_run.id", index=True)
    structure: str | None = Field(default=None, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=json_dict_column())


class Outcome(SQLModel, table=True):
    """A decision on a submission. An override adds a new row that supersedes the previous one."""

    __tablename__ = "outcome"
    __table_args__ = (
        sa.CheckConstraint(
            "source = 'automatic' OR (justification IS NOT NULL AND length(justification) > 0)",
            name="override_justified",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    level: OutcomeLevel = Field(sa_column=enum_column(OutcomeLevel))
    reasons: list[str] = Field(default_factory=list, sa_column=json_list_column())
    source: OutcomeSource = Field(sa_column=enum_column(OutcomeSource))
    decided_by: str = Field(max_length=200)
    justification: str | None = Field(default=None, max_length=4000)
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    supersedes_id: int | None = Field(default=None, foreign_key="outcome.id")
    is_current: bool = Field(default=True)
    decided_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    valid_from: datetime | None = Field(
        default=None,
        sa_column=utc_column(nullable=True),
        description=(
            "Start of the stage's validity when it is not decided_at: a rescored outcome keeps the time the "
            "submission was first decided, so rescoring never extends a credential."
        ),
    )


# --- credentials ----------------------------------------------------------------------------------------------


class Credential(SQLModel, table=True):
    """A provider's credential for exactly one technique or one trial."""

    __tablename__ = "credential"
    __table_args__ = (
        sa.UniqueConstraint("provider_id", "technique_id"),
        sa.UniqueConstraint("provider_id", "trial_id"),
        sa.CheckConstraint("(technique_id IS NULL) <> (trial_id IS NULL)", name="one_scope"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider_id: int = Field(foreign_key="provider.id", index=True)
    technique_id: int | None = Field(default=None, foreign_key="technique.id", index=True)
    trial_id: int | None = Field(default=None, foreign_key="trial.id", index=True)
    status: CredentialStatus = Field(sa_column=enum_column(CredentialStatus, index=True))
    granted_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    valid_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True, index=True))
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=json_dict_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


# --- audit ----------------------------------------------------------------------------------------------------


class AuditEvent(SQLModel, table=True):
    """Append-only record of every change: who did what to which subject, before and after, and why.

    The migration installs triggers that refuse UPDATE and DELETE on this table on SQLite and PostgreSQL.
    """

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=utc_column(index=True))
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64, index=True)
    subject_type: str = Field(max_length=64)
    subject_id: str = Field(max_length=64)
    before: dict[str, Any] | None = Field(default=None, sa_column=json_dict_column(nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=json_dict_column(nullable=True))
    reason: str | None = Field(default=None, max_length=4000)
    prev_hash: str = Field(max_length=64, description="row_hash of the event before this one (64 zeros for the first).")
    row_hash: str = Field(
        max_length=64, unique=True, description="SHA-256 of prev_hash and this event's content (models.audit)."
    )


class AuditChainHead(SQLModel, table=True):
    """The end of the audit hash chain: how many events it holds and the last one's hash (one row, id 1).

    Writing an event locks this row until the transaction ends, so events are chained in commit order; deleting the
    newest events (which the append-only triggers refuse) would still be seen, as the count and hash would not match.
    """

    __tablename__ = "audit_chain_head"

    id: int | None = Field(default=None, primary_key=True)
    events: int = Field(default=0)
    last_hash: str = Field(max_length=64)


# --- users and tokens -----------------------------------------------------------------------------------------


class User(SQLModel, table=True):
    """A person or service account. Centre users are bound to exactly one provider."""

    __tablename__ = "app_user"
    __table_args__ = (sa.CheckConstraint("(role = 'centre') = (provider_id IS NOT NULL)", name="centre_has_provider"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str = Field(max_length=200)
    role: Role = Field(sa_column=enum_column(Role))
    provider_id: int | None = Field(default=None, foreign_key="provider.id", index=True)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    os_account: str | None = Field(
        default=None,
        max_length=64,
        unique=True,
        description="Operating-system account the `rtqa` command line acts as this user for (None: by token only).",
    )


class ApiToken(SQLModel, table=True):
    """An API token. Only the SHA-256 of the token is stored; the token itself is shown once at creation."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    token_sha256: str = Field(max_length=64, min_length=64, unique=True)
    label: str = Field(max_length=200, default="")
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_used_at: datetime | None = Field(
        default=None, sa_column=utc_column(nullable=True), description="Last request with it (to the minute)."
    )


# --- DICOM push -----------------------------------------------------------------------------------------------


class DicomAETitle(SQLModel, table=True):
    """A centre's DICOM application entity title, registered to its provider: the receiver (``rtqa dicom serve``)
    accepts associations only from registered calling AE titles and files what they send under that provider."""

    __tablename__ = "dicom_ae_title"

    id: int | None = Field(default=None, primary_key=True)
    ae_title: str = Field(max_length=16, unique=True, description="Calling AE title, without padding spaces.")
    provider_id: int = Field(foreign_key="provider.id", index=True)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


# --- scoring runs ---------------------------------------------------------------------------------------------


class ScoringRun(SQLModel, table=True):
    """One scoring of a submission's stored files: against which case reference and protocol version, and why.

    The first scoring of a submission is an ``initial`` run. A rescore (the protocol or the case reference got a
    new version) adds a ``rescore`` run beside the earlier ones, which keep their results: the new run becomes
    current and points at the run it supersedes, and ``changes`` holds what moved (criteria with old and new
    values, levels and thresholds; the outcome level before and after). Results (structure, plan and dose) belong
    to exactly one run; the current run's results are the submission's results.

    ``outcome_id`` is the automatic outcome decided from this run. When a staff override was current at a
    rescore, the override stays current and ``kept_override_id`` names it: the submission awaits review while
    that override is still the current outcome (see :mod:`models.scoring_runs`).
    """

    __tablename__ = "scoring_run"

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    case_id: int = Field(foreign_key="benchmark_case.id", index=True, description="The reference scored against.")
    protocol_id: str = Field(max_length=64)
    protocol_version: str = Field(max_length=32)
    trigger: ScoringTrigger = Field(sa_column=enum_column(ScoringTrigger))
    reason: str = Field(default="", max_length=300, description="e.g. 'protocol uk-lung-sabr 1.0 -> 1.1'.")
    supersedes_id: int | None = Field(default=None, foreign_key="scoring_run.id")
    is_current: bool = Field(default=True)
    outcome_id: int | None = Field(default=None, foreign_key="outcome.id")
    kept_override_id: int | None = Field(default=None, foreign_key="outcome.id")
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=json_dict_column())
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


# --- notifications --------------------------------------------------------------------------------------------


class OutboxMessage(SQLModel, table=True):
    """A notification to send (an e-mail): the outbox is the record of what was said to whom, sent or not.

    ``sent_at`` stays NULL until a sender delivers it (none is configured by default). A reminder about a credential
    names the credential and the end of validity it warns about; one reminder per credential, end and recipient.
    """

    __tablename__ = "outbox"
    __table_args__ = (sa.UniqueConstraint("kind", "credential_id", "valid_until", "recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64, index=True, description="What the message is, e.g. 'credential_expiring'.")
    recipient: str = Field(max_length=320, description="E-mail address.")
    subject: str = Field(max_length=300)
    body: str = Field(max_length=20000)
    credential_id: int | None = Field(default=None, foreign_key="credential.id", index=True)
    valid_until: datetime | None = Field(
        default=None, sa_column=utc_column(nullable=True), description="The end of validity a reminder is about."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True, index=True))
