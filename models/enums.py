"""Controlled vocabularies, stored in the database by value."""

from __future__ import annotations

from enum import StrEnum


class TechniqueFamily(StrEnum):
    """Stereotactic technique family."""

    SABR = "sabr"
    SRS = "srs"


class QAStage(StrEnum):
    """Radiotherapy trial QA stages, Global Harmonisation Group vocabulary (Melidis et al., IJROBP 2014).

    The GHG "benchmark case" is split in two, as trial QA groups run it: the *outlining benchmark* (contours
    against the reference) and the *planning benchmark* (the centre's plan against the protocol). The
    *complex treatment dosimetry check* is the TPS check / virtual phantom: the centre recalculates a given plan
    and its dose is compared with the reference by 3D gamma.
    """

    FACILITY_QUESTIONNAIRE = "facility_questionnaire"
    BEAM_OUTPUT_AUDIT = "beam_output_audit"
    OUTLINING_BENCHMARK = "outlining_benchmark"
    PLANNING_BENCHMARK = "planning_benchmark"
    DUMMY_RUN = "dummy_run"
    COMPLEX_TREATMENT_DOSIMETRY_CHECK = "complex_treatment_dosimetry_check"
    VIRTUAL_PHANTOM = "virtual_phantom"
    INDIVIDUAL_CASE_REVIEW = "individual_case_review"
    TREATMENT_RECORD_REVIEW = "treatment_record_review"
    PROTOCOL_COMPLIANCE_VISIT = "protocol_compliance_visit"

    @property
    def label(self) -> str:
        """Words for people, e.g. ``"planning benchmark"``."""
        return self.value.replace("_", " ")


class StageStatus(StrEnum):
    """Where one required stage of a provider's credential stands (derived, not stored)."""

    PASSED = "passed"
    FAILED = "failed"
    MISSING = "missing"
    LAPSED = "lapsed"
    IN_PROGRESS = "in_progress"


class SubmissionStatus(StrEnum):
    """Lifecycle: received → validated → scored → decided, or rejected (with a reason) at any step."""

    RECEIVED = "received"
    VALIDATED = "validated"
    SCORED = "scored"
    DECIDED = "decided"
    REJECTED = "rejected"


class OutcomeLevel(StrEnum):
    """Benchmark / plan review outcome (RTTQA, NRG; QUARTET adds justified variation)."""

    PER_PROTOCOL = "per_protocol"
    ACCEPTABLE_VARIATION = "acceptable_variation"
    UNACCEPTABLE_VARIATION = "unacceptable_variation"
    JUSTIFIED_VARIATION = "justified_variation"

    @property
    def passes(self) -> bool:
        """Whether this outcome counts towards a credential."""
        return self is not OutcomeLevel.UNACCEPTABLE_VARIATION


class OutcomeSource(StrEnum):
    """Who decided an outcome."""

    AUTOMATIC = "automatic"
    OVERRIDE = "override"


class CredentialStatus(StrEnum):
    """State of a provider's credential for a technique or a trial."""

    PENDING = "pending"
    CREDENTIALED = "credentialed"
    LAPSED = "lapsed"
    SUSPENDED = "suspended"


class Role(StrEnum):
    """What a user may do: QA staff, a centre (bound to one provider), or a commissioner / trial unit."""

    STAFF = "staff"
    CENTRE = "centre"
    COMMISSIONER = "commissioner"


class ScoringTrigger(StrEnum):
    """Why a submission's stored files were scored: on arrival, or again after its protocol or case changed."""

    INITIAL = "initial"
    RESCORE = "rescore"
