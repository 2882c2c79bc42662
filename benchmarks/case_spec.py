"""What a benchmark case is: its QA stage, technique, protocol, phantom and (for planning and dosimetry cases) its
reference plan. The catalogue of cases is :mod:`benchmarks.case_catalogue`; building is :mod:`benchmarks.cases`.

Each case belongs to exactly one QA stage of one technique. The stage decides what the centre receives, what it
sends back and how the submission is scored:

========================== ============================== ================ ===============================
stage                      centre receives                centre returns   scored on
========================== ============================== ================ ===============================
:data:`STAGE_OUTLINING`    CT                             RTSTRUCT         contours vs reference contours
:data:`STAGE_PLANNING`     CT, RTSTRUCT                   RTPLAN, RTDOSE   plan and dose vs the protocol
:data:`STAGE_DOSIMETRY`    CT, RTSTRUCT, reference RTPLAN RTDOSE           gamma vs the reference RTDOSE
========================== ============================== ================ ===============================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from benchmarks.dicom_writer import ArcSpec
from benchmarks.dose_model import DEFAULT_DOSE_SUBSAMPLING, DoseModelOptions, TargetPrescription
from benchmarks.phantoms import Phantom

__all__ = [
    "CASE_STAGES",
    "DISTRIBUTED_FILES",
    "STAGE_DOSIMETRY",
    "STAGE_OUTLINING",
    "STAGE_PLANNING",
    "CaseSpec",
    "CaseSpecError",
    "PlanSpec",
]

STAGE_OUTLINING: Final = "outlining_benchmark"
"""Outlining benchmark: the centre contours the reference CT; scored on its contours only (Dice, surface
distances, ...) against the reference RTSTRUCT, under the protocol's ``outlining`` criteria."""

STAGE_PLANNING: Final = "planning_benchmark"
"""Planning benchmark: the centre plans the case on the reference CT and structures; scored on its plan and dose
against the protocol's ``planning`` criteria (prescription, coverage, conformity, organ-at-risk limits). The
reference RTPLAN / RTDOSE show that the protocol can be met; they are not sent to the centre."""

STAGE_DOSIMETRY: Final = "complex_treatment_dosimetry_check"
"""Complex treatment dosimetry check (TPS check / virtual phantom): the centre recalculates the reference RTPLAN
on the reference CT in its own planning system and returns the RTDOSE; scored by 3D gamma against the reference
RTDOSE under the protocol's ``gamma`` criteria (Global Harmonisation Group stage name)."""

CASE_STAGES: Final = (STAGE_OUTLINING, STAGE_PLANNING, STAGE_DOSIMETRY)
"""Every stage a case may belong to."""

DISTRIBUTED_FILES: Final[dict[str, tuple[str, ...]]] = {
    STAGE_OUTLINING: ("CT",),
    STAGE_PLANNING: ("CT", "RTSTRUCT"),
    STAGE_DOSIMETRY: ("CT", "RTSTRUCT", "RTPLAN"),
}
"""Stage -> the reference objects (by (0008,0060) Modality) sent to the centre, in the case download
(:mod:`benchmarks.case_package`). The others stay with the QA group: they are the answers (the reference RTSTRUCT of
an outlining case, the reference RTDOSE of a TPS check) or show that the protocol can be met (the reference RTPLAN
and RTDOSE of a planning case)."""


class CaseSpecError(ValueError):
    """An inconsistent case specification; the message names the case and the field."""


@dataclass(frozen=True)
class PlanSpec:
    """The reference plan of a planning or dosimetry case.

    Attributes:
        targets: PTV names and total prescriptions (one (300A,0010) DoseReferenceSequence item each).
        fractions: (300A,0078) NumberOfFractionsPlanned.
        arcs: the VMAT arcs.
        subsampling: CT-to-dose-grid subsampling (z, y, x), see :func:`benchmarks.dose_model.compute_reference_dose`.
        options: dose-model options.
        machine_name: (300A,00B2) TreatmentMachineName.
    """

    targets: tuple[TargetPrescription, ...]
    fractions: int
    arcs: tuple[ArcSpec, ...]
    subsampling: tuple[int, int, int] = DEFAULT_DOSE_SUBSAMPLING
    options: DoseModelOptions = field(default_factory=DoseModelOptions)
    machine_name: str = "TrueBeam1"


@dataclass(frozen=True)
class CaseSpec:
    """A benchmark case.

    Attributes:
        case_id: stable identifier, e.g. ``"lung-sabr-outlining-mini"``.
        version: case version; a new version means new reference files (and a new content hash).
        technique: technique credentialed, e.g. ``"sabr_lung"``.
        stage: QA stage, one of :data:`CASE_STAGES`.
        title: human-readable title.
        protocol_id: id of the protocol file that scores submissions (see :mod:`benchmarks.protocols`).
        builder: returns the phantom (CT and reference masks); must be deterministic.
        patient_id, patient_name: (0010,0020) PatientID and (0010,0010) PatientName of the case.
        body_part_examined: (0018,0015) BodyPartExamined of the CT, e.g. ``"CHEST"``.
        description: what the case exercises.
        plan: the reference plan (RTPLAN and RTDOSE are written); required for planning and dosimetry cases,
            ``None`` for outlining cases.

    Raises:
        CaseSpecError: unknown stage, or a plan missing (planning, dosimetry) or present (outlining).
    """

    case_id: str
    version: str
    technique: str
    stage: str
    title: str
    protocol_id: str
    builder: Callable[[], Phantom]
    patient_id: str
    patient_name: str
    body_part_examined: str
    description: str = ""
    plan: PlanSpec | None = None

    def __post_init__(self) -> None:
        if self.stage not in CASE_STAGES:
            raise CaseSpecError(f"case {self.case_id!r}: stage {self.stage!r} is not one of {', '.join(CASE_STAGES)}")
        if self.stage == STAGE_OUTLINING and self.plan is not None:
            raise CaseSpecError(f"case {self.case_id!r}: an {STAGE_OUTLINING} case has no reference plan; drop plan")
        if self.stage != STAGE_OUTLINING and self.plan is None:
            raise CaseSpecError(f"case {self.case_id!r}: a {self.stage} case needs a reference plan (plan=PlanSpec)")

    @property
    def uid_seed(self) -> str:
        """Seed for every UID of the reference files."""
        return f"rtqa-case/{self.case_id}/{self.version}"

    @property
    def directory_name(self) -> str:
        """Name of the built case directory."""
        return f"{self.case_id}-{self.version}"

    @property
    def distributed_files(self) -> tuple[str, ...]:
        """The reference objects (modalities ``"CT"``, ``"RTSTRUCT"``, ``"RTPLAN"``) the centre receives for this
        case's stage (see :data:`DISTRIBUTED_FILES`)."""
        return DISTRIBUTED_FILES[self.stage]
