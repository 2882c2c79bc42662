"""Outlining scores: name mapping, per-structure metrics on a shared grid, missing and unmatched structures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qa_checks.geometry import ImageVolume
from qa_checks.outlining import score_outlining
from qa_checks.structures import Contour, Structure, StructureSet

# Grid: 20 slices x 40 x 40 voxels at (z, y, x) spacing (2, 1, 1) mm, voxel centres at integer mm in-plane.
Z = np.arange(20) * 2.0
Y = np.arange(40) * 1.0
X = np.arange(40) * 1.0
GRID = ImageVolume(np.zeros((20, 40, 40), dtype=np.float32), Z, Y, X)


def _box(number: int, name: str, x0: float, x1: float, y0: float, y1: float, z_planes: np.ndarray) -> Structure:
    """A box drawn as one square per plane; polygon edges sit half-way between voxel centres."""
    contours = tuple(
        Contour(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]), "CLOSED_PLANAR") for z in z_planes
    )
    return Structure(number, name, "ORGAN", contours)


PLANES = Z[5:15]  # ten slices: 20 mm
REFERENCE = StructureSet(
    (
        _box(1, "SpinalCord", 9.5, 19.5, 9.5, 19.5, PLANES),  # 10 x 10 voxels per slice
        _box(2, "Heart", 20.5, 30.5, 20.5, 30.5, PLANES),
    )
)


def test_identical_sets_with_centre_names() -> None:
    submitted = StructureSet(
        (
            _box(7, "Cord", 9.5, 19.5, 9.5, 19.5, PLANES),
            _box(8, "HEART", 20.5, 30.5, 20.5, 30.5, PLANES),
        )
    )
    score = score_outlining(REFERENCE, submitted, GRID, structures=["SpinalCord", "Heart"])
    assert score.missing == () and score.unmatched_submitted == ()
    assert score.spacing_mm == (2.0, 1.0, 1.0)
    by_name = {s.structure: s for s in score.scores}
    cord = by_name["SpinalCord"]
    assert cord.submitted_name == "Cord" and cord.match_reason  # the reviewer sees why
    values = cord.measurements()
    assert values["dice"] == (1.0, "1")
    assert values["hausdorff_mm"] == (0.0, "mm")
    assert values["surface_dice"] == (1.0, "1")
    # 10 x 10 voxels x 10 slices of 2 mm^3 = 2000 mm^3 = 2 cc, exactly by voxel count.
    assert cord.reference_volume_cc == pytest.approx(2.0)
    assert values["volume_ratio"] == (1.0, "1")


def test_each_matched_structure_goes_through_run_each() -> None:
    """A caller may run each structure's comparison as a step of its own (a workflow task): it is handed every
    matched structure by name, in the order asked, and what it returns is the score; a missing one is not."""
    submitted = StructureSet((_box(7, "Cord", 9.5, 19.5, 9.5, 19.5, PLANES),))
    seen: list[str] = []

    def run_each(name: str, compute: Any) -> Any:
        seen.append(name)
        return compute()

    score = score_outlining(REFERENCE, submitted, GRID, structures=["Heart", "SpinalCord"], run_each=run_each)
    assert seen == ["SpinalCord"] and score.missing == ("Heart",)
    assert [s.structure for s in score.scores] == ["SpinalCord"] and score.scores[0].dice == 1.0


def test_shifted_box_scores_analytically() -> None:
    # The same box moved 2 mm in +x: overlap 8 of 10 columns, so Dice = 2*8/(10+10) = 0.8 exactly by voxel count;
    # centroids 2 mm apart; every surface point within 2 mm of the other surface, the farthest exactly 2 mm.
    submitted = StructureSet((_box(1, "SpinalCord", 11.5, 21.5, 9.5, 19.5, PLANES),))
    score = score_outlining(REFERENCE, submitted, GRID, structures=["SpinalCord"])
    (cord,) = score.scores
    values = cord.measurements()
    assert values["dice"][0] == pytest.approx(0.8)
    assert values["jaccard"][0] == pytest.approx(8 / 12)
    assert values["centroid_distance_mm"][0] == pytest.approx(2.0)
    assert values["hausdorff_mm"][0] == pytest.approx(2.0)
    assert values["surface_dice"][0] == pytest.approx(1.0)  # tolerance 2 mm includes distances of exactly 2 mm


def test_missing_and_unmatched_are_reported() -> None:
    submitted = StructureSet((_box(1, "SpinalCord", 9.5, 19.5, 9.5, 19.5, PLANES), _box(2, "Zzz", 0, 5, 0, 5, PLANES)))
    score = score_outlining(REFERENCE, submitted, GRID, structures=["SpinalCord", "Heart"])
    assert [s.structure for s in score.scores] == ["SpinalCord"]
    assert score.missing == ("Heart",)
    assert score.unmatched_submitted == ("Zzz",)


def test_empty_submitted_mask_gives_none_for_undefined_distances() -> None:
    # Drawn entirely outside the grid: the mask is empty, Dice is 0, distances are infinite and stored as None.
    submitted = StructureSet((_box(1, "SpinalCord", 100.5, 110.5, 100.5, 110.5, PLANES),))
    score = score_outlining(REFERENCE, submitted, GRID, structures=["SpinalCord"])
    values = score.scores[0].measurements()
    assert values["dice"] == (0.0, "1")
    assert values["hausdorff_mm"] == (None, "mm")
    assert values["centroid_distance_mm"] == (None, "mm")
    assert score.scores[0].submitted_volume_cc == 0.0


class TestProposedNames:
    """A name only proposed for a structure (``PTV_5400`` for ``PTV``) is not scored until the reviewer confirms
    it; exact and synonym matches are scored as before."""

    REFERENCE_WITH_PTV = StructureSet(
        (
            _box(1, "SpinalCord", 9.5, 19.5, 9.5, 19.5, PLANES),
            _box(2, "PTV", 20.5, 30.5, 20.5, 30.5, PLANES),
        )
    )

    def _submitted(self, ptv_name: str) -> StructureSet:
        return StructureSet(
            (_box(7, "Cord", 9.5, 19.5, 9.5, 19.5, PLANES), _box(8, ptv_name, 20.5, 30.5, 20.5, 30.5, PLANES))
        )

    def test_proposal_is_unmatched_until_confirmed(self) -> None:
        score = score_outlining(self.REFERENCE_WITH_PTV, self._submitted("PTV_5400"), GRID,
                                structures=["SpinalCord", "PTV"])  # fmt: skip
        assert [s.structure for s in score.scores] == ["SpinalCord"]
        assert score.missing == ("PTV",)
        assert score.unmatched_submitted == ("PTV_5400",)
        assert score.proposed == (("PTV_5400", "PTV", "PTV_5400 looks like PTV with a dose suffix '5400': confirm"),)

    def test_confirmed_proposal_is_scored(self) -> None:
        score = score_outlining(self.REFERENCE_WITH_PTV, self._submitted("PTV_5400"), GRID,
                                structures=["SpinalCord", "PTV"], confirmed_names={"PTV_5400": "PTV"})  # fmt: skip
        by_name = {s.structure: s for s in score.scores}
        assert by_name["PTV"].submitted_name == "PTV_5400"
        assert by_name["PTV"].match_reason.endswith("confirmed by the reviewer")
        assert by_name["PTV"].measurements()["dice"] == (1.0, "1")
        assert score.missing == () and score.unmatched_submitted == () and score.proposed == ()

    def test_exact_name_scored_without_proposal(self) -> None:
        score = score_outlining(self.REFERENCE_WITH_PTV, self._submitted("ptv"), GRID, structures=["SpinalCord", "PTV"])
        assert [s.structure for s in score.scores] == ["SpinalCord", "PTV"]
        assert score.proposed == () and score.unmatched_submitted == ()
