"""What an RTDOSE's values mean, and turning beam doses into the plan dose.

A planning benchmark is scored on the *physical dose of the whole plan* (all fractions, all beams). An RTDOSE
says what its values are in two attributes:

- (3004,0004) *DoseType*: ``PHYSICAL``, ``EFFECTIVE`` (physical dose times a biological factor) or ``ERROR``
  (a dose difference). Only the types the caller allows are read (default :data:`DEFAULT_ALLOWED_DOSE_TYPES`).
- (3004,000A) *DoseSummationType*: ``PLAN`` (the whole plan: accepted as is), ``FRACTION`` (one fraction of
  the plan: accepted only when the caller states the number of fractions, and then multiplied by it), ``BEAM``
  (one beam of the plan: refused alone; several, one per beam of one plan on one grid, can be summed with
  :func:`sum_beam_doses`), and any other value (``MULTI_PLAN``, ``PLAN_SUM``, ``RECORD``, ``CONTROL_POINT``,
  ...): refused.

Every conversion is recorded on the returned :class:`~qa_checks.geometry.DoseGrid`: ``summation`` says what the
values now are and ``notes`` says, in words, how they were obtained.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from qa_checks.errors import MissingAttributeError, UnsupportedDoseSummationError, UnsupportedDoseTypeError
from qa_checks.geometry import DoseGrid

__all__ = [
    "DEFAULT_ALLOWED_DOSE_TYPES",
    "GRID_MATCH_TOLERANCE_MM",
    "SUMMATION_BEAM",
    "SUMMATION_PLAN",
    "DoseMeaning",
    "dose_meaning",
    "sum_beam_doses",
]

SUMMATION_PLAN: Final = "PLAN"
""":attr:`DoseGrid.summation` of values that are the dose of the whole plan (all beams, all fractions)."""

SUMMATION_BEAM: Final = "BEAM"
""":attr:`DoseGrid.summation` of values that are the dose of one beam only (read with ``allow_beam=True``)."""

DEFAULT_ALLOWED_DOSE_TYPES: Final[tuple[str, ...]] = ("PHYSICAL",)
"""(3004,0004) *DoseType* values accepted unless the caller allows others."""

GRID_MATCH_TOLERANCE_MM: Final = 0.01
"""Largest difference (mm) between voxel-centre coordinates of beam doses for them to count as one grid;
the same reasoning as the slice-spacing tolerance of the readers (16-character DS rounding is ~1e-10 mm)."""

_DOSE_TYPE_TAG: Final = "(3004,0004) DoseType"
_SUMMATION_TAG: Final = "(3004,000A) DoseSummationType"
_EXPORT_PLAN: Final = "export the plan dose (DoseSummationType PLAN) of the submitted plan"


@dataclass(frozen=True)
class DoseMeaning:
    """How to turn an RTDOSE's stored dose into what it is read as.

    Attributes:
        factor: multiply the values by this (the number of fractions for a FRACTION dose, else 1).
        summation: :data:`SUMMATION_PLAN` or :data:`SUMMATION_BEAM`.
        notes: each conversion in words, e.g. ``"multiplied by 5 fractions: (3004,000A) DoseSummationType is
            FRACTION"``.
    """

    factor: float
    summation: str
    notes: tuple[str, ...]


def dose_meaning(
    dose_type: str | None,
    summation_type: str | None,
    *,
    name: str,
    number_of_fractions: int | None = None,
    allowed_dose_types: Collection[str] = DEFAULT_ALLOWED_DOSE_TYPES,
    allow_beam: bool = False,
) -> DoseMeaning:
    """Check an RTDOSE's (3004,0004) *DoseType* and (3004,000A) *DoseSummationType* (see the module docstring).

    Args:
        dose_type, summation_type: the attribute values (None when absent or empty).
        name: the file as the user knows it (relative to the submission folder), for messages.
        number_of_fractions: the number of fractions of the plan; needed to accept a FRACTION dose, which is
            then multiplied by it. Ignored for a PLAN dose.
        allowed_dose_types: *DoseType* values accepted (case-insensitive).
        allow_beam: accept a BEAM dose as the dose of that beam (``summation`` BEAM), e.g. to sum beams.

    Raises:
        MissingAttributeError: either attribute is absent (both are Type 1 in the RT Dose module).
        UnsupportedDoseTypeError: *DoseType* not allowed.
        UnsupportedDoseSummationError: *DoseSummationType* FRACTION without ``number_of_fractions``, BEAM
            without ``allow_beam``, or any other value.
        ValueError: ``number_of_fractions`` not a positive integer.
    """
    allowed = tuple(str(t).strip().upper() for t in allowed_dose_types)
    if dose_type is None:
        raise MissingAttributeError(
            f"{name}: {_DOSE_TYPE_TAG} is missing or empty; export the dose with DoseType PHYSICAL"
        )
    kind = dose_type.strip().upper()
    if kind not in allowed:
        what = {"ERROR": " (a dose difference, not a dose)", "EFFECTIVE": " (a biologically weighted dose)"}
        raise UnsupportedDoseTypeError(
            f"{name}: {_DOSE_TYPE_TAG} is {kind!r}{what.get(kind, '')}; only {', '.join(allowed)} dose is read. "
            f"Export the physical plan dose (DoseType PHYSICAL), or pass allowed_dose_types including {kind!r} "
            f"if this dose is what the protocol asks for"
        )
    if summation_type is None:
        raise MissingAttributeError(f"{name}: {_SUMMATION_TAG} is missing or empty; {_EXPORT_PLAN}")
    summation = summation_type.strip().upper()
    if summation == SUMMATION_PLAN:
        return DoseMeaning(1.0, SUMMATION_PLAN, ())
    if summation == "FRACTION":
        if number_of_fractions is None:
            raise UnsupportedDoseSummationError(
                f"{name}: {_SUMMATION_TAG} is 'FRACTION' (the dose of one fraction); {_EXPORT_PLAN}, or pass "
                f"number_of_fractions explicitly to read it as that many fractions"
            )
        n = _positive_int(number_of_fractions)
        return DoseMeaning(float(n), SUMMATION_PLAN, (f"multiplied by {n} fractions: {_SUMMATION_TAG} is FRACTION",))
    if summation == SUMMATION_BEAM:
        if not allow_beam:
            raise UnsupportedDoseSummationError(
                f"{name}: {_SUMMATION_TAG} is 'BEAM' (the dose of one beam, not of the plan); {_EXPORT_PLAN}, or "
                f"submit one RTDOSE per beam of the plan on one grid and load them with sum_beams=True"
            )
        return DoseMeaning(1.0, SUMMATION_BEAM, ())
    raise UnsupportedDoseSummationError(
        f"{name}: {_SUMMATION_TAG} is {summation!r}; only PLAN (or FRACTION with the number of fractions given) "
        f"is the dose of the submitted plan: {_EXPORT_PLAN}"
    )


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ValueError(f"number_of_fractions must be a positive integer; got {value!r}")
    return int(value)


def sum_beam_doses(doses: Sequence[DoseGrid]) -> DoseGrid:
    """The plan dose as the sum of one BEAM dose per beam of one plan on one grid.

    Accepted only when there are at least two doses, each read as a single-beam dose (``summation`` BEAM,
    e.g. ``read_rtdose(..., allow_beam=True)``) and referencing exactly one beam, all referencing the same RTPLAN
    with distinct beam numbers, with the same frame of reference, (3004,0002) *DoseUnits*, (3004,0004) *DoseType*
    and the same grid (every voxel-centre coordinate within :data:`GRID_MATCH_TOLERANCE_MM`). Nothing is
    resampled. The result has ``summation`` PLAN, the referenced beam numbers in increasing order, and the note
    ``"summed N BEAM doses (beams 1, 2, ...)"`` after the notes of the inputs; its ``path`` lists the inputs'.

    Raises:
        UnsupportedDoseSummationError: any of the conditions above fails (the message names the file and says
            why).
    """
    if not doses:
        raise UnsupportedDoseSummationError("no BEAM doses to sum; export the plan dose (DoseSummationType PLAN)")

    def label(d: DoseGrid) -> str:
        return d.path or "dose grid"

    if len(doses) == 1:
        d = doses[0]
        which = ", ".join(str(b) for b in d.referenced_beam_numbers) or "unknown"
        raise UnsupportedDoseSummationError(
            f"{label(d)}: {_SUMMATION_TAG} is 'BEAM' and it is the only RTDOSE (beam {which}): one beam is not the "
            f"plan dose; {_EXPORT_PLAN}, or submit one RTDOSE per beam of the plan"
        )
    first = doses[0]
    seen: dict[int, str] = {}
    for d in doses:
        if d.summation != SUMMATION_BEAM:
            raise UnsupportedDoseSummationError(
                f"{label(d)}: {_SUMMATION_TAG} is {d.dose_summation_type!r}, not 'BEAM'; only single-beam doses "
                f"are summed"
            )
        if len(d.referenced_beam_numbers) != 1:
            raise UnsupportedDoseSummationError(
                f"{label(d)}: references beams {list(d.referenced_beam_numbers)} in (300C,0006) "
                f"ReferencedBeamNumber; a BEAM dose to be summed must reference exactly one beam"
            )
        if d.referenced_plan_uid is None or d.referenced_plan_uid != first.referenced_plan_uid:
            raise UnsupportedDoseSummationError(
                f"{label(d)}: (300C,0002) ReferencedRTPlanSequence names plan {d.referenced_plan_uid!r} but "
                f"{label(first)} names {first.referenced_plan_uid!r}; beam doses of one plan only are summed"
            )
        beam = d.referenced_beam_numbers[0]
        if beam in seen:
            raise UnsupportedDoseSummationError(
                f"{label(d)} and {seen[beam]} are both the dose of beam {beam}; each beam must appear once"
            )
        seen[beam] = label(d)
        for attribute in ("frame_of_reference_uid", "dose_units", "dose_type"):
            if getattr(d, attribute) != getattr(first, attribute):
                raise UnsupportedDoseSummationError(
                    f"{label(d)}: {attribute} is {getattr(d, attribute)!r} but {label(first)} has "
                    f"{getattr(first, attribute)!r}; beam doses to be summed must agree"
                )
        _require_same_grid(d, first, label(d), label(first))
    total = np.sum([d.values_gy for d in doses], axis=0)
    beams = sorted(seen)
    note = f"summed {len(doses)} BEAM doses (beams {', '.join(str(b) for b in beams)})"
    return DoseGrid(
        values_gy=total,
        z_mm=first.z_mm,
        y_mm=first.y_mm,
        x_mm=first.x_mm,
        frame_of_reference_uid=first.frame_of_reference_uid,
        dose_units=first.dose_units,
        dose_type=first.dose_type,
        dose_summation_type=first.dose_summation_type,
        referenced_plan_uid=first.referenced_plan_uid,
        sop_instance_uid=None,
        path=", ".join(label(d) for d in doses),
        summation=SUMMATION_PLAN,
        referenced_beam_numbers=tuple(beams),
        notes=(*(n for d in doses for n in d.notes), note),
    )


def _require_same_grid(d: DoseGrid, ref: DoseGrid, name: str, ref_name: str) -> None:
    if d.shape != ref.shape:
        raise UnsupportedDoseSummationError(
            f"{name}: grid shape (z, y, x) {d.shape} differs from {ref_name}'s {ref.shape}; beam doses on "
            f"different grids are not summed (nothing is resampled): {_EXPORT_PLAN}"
        )
    for axis in ("z_mm", "y_mm", "x_mm"):
        diff = float(np.max(np.abs(getattr(d, axis) - getattr(ref, axis))))
        if diff > GRID_MATCH_TOLERANCE_MM:
            raise UnsupportedDoseSummationError(
                f"{name}: voxel centres along {axis[0]} differ from {ref_name}'s by up to {diff:.4g} mm; beam "
                f"doses on different grids are not summed (nothing is resampled): {_EXPORT_PLAN}"
            )
