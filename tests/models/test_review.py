"""A submission's structure-name mapping for the reviewer: read from the stored results and the scorer's record;
confirmed (and stale once it changes) or flagged, each audited and changing nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from models.audit import record_audit
from models.enums import OutcomeLevel, QAStage
from models.outcomes import current_outcome
from models.review import (
    MappingReviewError,
    UnknownMappingSubmissionError,
    confirm_mapping,
    flag_mapping,
    name_mapping,
)
from models.tables import AuditEvent, PlanResult, StructureResult
from tests.models.world import World


def _structure(world: World, sid: int, structure: str, submitted: str, why: str, metric: str = "dice") -> None:
    world.session.add(
        StructureResult(
            submission_id=sid,
            structure=structure,
            submitted_name=submitted,
            metric=metric,
            value=0.9,
            unit="1",
            parameters={"name_match": why},
        )
    )
    world.session.flush()


def _pairs(world: World, sid: int) -> list[tuple[str | None, str | None, str, str]]:
    return [(r.submitted, r.tg263, r.kind, r.reason) for r in name_mapping(world.session, sid).rows]


class TestMapping:
    def test_outlining_rows_once_per_structure_then_the_scorers_record(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.PER_PROTOCOL)
        _structure(world, sid, "Lung_L", "Lt Lung", "synonym of Lung; laterality prefix 'lt'")
        _structure(world, sid, "Lung_L", "Lt Lung", "synonym of Lung; laterality prefix 'lt'", metric="hd95_mm")
        record_audit(
            world.session,
            actor="flow",
            action="submission.scored",
            subject_type="submission",
            subject_id=sid,
            after={
                "unmatched_submitted": ["PTV_5400"],
                "ambiguous": {"Lung": ["Lung_L", "Lung_R"]},
                "missing": ["PTV"],
            },
        )
        assert _pairs(world, sid) == [
            ("Lt Lung", "Lung_L", "matched", "synonym of Lung; laterality prefix 'lt'"),
            (
                "PTV_5400",
                None,
                "unmatched",
                "matches no structure the protocol asks for (or is only proposed for one)",
            ),
            ("Lung", None, "ambiguous", "could be any of Lung_L, Lung_R: none chosen"),
            (None, "PTV", "missing", "no submitted structure matches this name"),
        ]

    def test_planning_rows_targets_organs_composites_and_name_warnings(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.PER_PROTOCOL, QAStage.PLANNING_BENCHMARK)
        rows: list[tuple[str | None, dict[str, Any]]] = [
            ("PTV", {"submitted_name": "PTV_54", "prescription_source": "RTPLAN dose reference 1"}),
            ("SpinalCord", {"submitted_name": "Cord", "name_match": "synonym of SpinalCord"}),
            ("Lungs", {"composite_of": ["Lung_L", "Lung_R"], "submitted_names": ["L Lung", "R Lung"]}),
            (None, {"submitted_name": "ignored: no structure"}),
        ]
        for structure, params in rows:
            world.session.add(
                PlanResult(
                    submission_id=sid, structure=structure, metric="Dmax", value=1.0, unit="Gy", parameters=params
                )
            )
        record_audit(
            world.session,
            actor="flow",
            action="submission.scored",
            subject_type="submission",
            subject_id=sid,
            after={
                "warnings": [
                    "structure 'Eso' could be any of Esophagus, Stomach: not used; rename it",
                    "D0.035cc of SpinalCord on a 3 mm dose grid: the volume is 1.3 dose voxels",
                ]
            },
        )
        view = name_mapping(world.session, sid)
        assert [(r.submitted, r.tg263, r.reason) for r in view.rows] == [
            ("PTV_54", "PTV", "target of the plan; prescription: RTPLAN dose reference 1"),
            ("Cord", "SpinalCord", "synonym of SpinalCord"),
            ("L Lung", "Lung_L", "part of Lungs; the matching rule is not recorded"),
            ("R Lung", "Lung_R", "part of Lungs; the matching rule is not recorded"),
        ]
        assert view.notes == ("structure 'Eso' could be any of Esophagus, Stomach: not used; rename it",)

    def test_no_results_no_rows(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.PER_PROTOCOL)
        assert name_mapping(world.session, sid).rows == ()


class TestConfirmAndFlag:
    def test_confirmation_goes_stale_when_the_mapping_changes(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.PER_PROTOCOL)
        _structure(world, sid, "Heart", "heart", "same name ignoring case and punctuation")
        confirm_mapping(world.session, submission_id=sid, actor="qa", note="  ")
        first = name_mapping(world.session, sid).confirmation
        assert first is not None and first.current and first.actor == "qa" and first.note is None
        _structure(world, sid, "Esophagus", "Oesophagus", "synonym of Esophagus")
        stale = name_mapping(world.session, sid).confirmation
        assert stale is not None and not stale.current
        confirm_mapping(world.session, submission_id=sid, actor="qa2", note="checked again")
        again = name_mapping(world.session, sid).confirmation
        assert again is not None and again.current and (again.actor, again.note) == ("qa2", "checked again")

    def test_flags_attach_to_their_row_and_change_no_outcome(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.UNACCEPTABLE_VARIATION)
        _structure(world, sid, "Heart", "heart", "same name ignoring case and punctuation")
        _structure(world, sid, "Esophagus", "Oesophagus", "synonym of Esophagus")
        flag_mapping(
            world.session, submission_id=sid, submitted="heart", tg263="Heart", note=" is the pericardium ", actor="qa"
        )
        view = name_mapping(world.session, sid)
        assert [len(r.flags) for r in view.rows] == [1, 0]
        assert view.rows[0].flags[0]["note"] == "is the pericardium" and view.rows[0].flags[0]["by"] == "qa"
        assert [e.action for e in view.reviews] == ["mapping.flagged"]
        outcome = current_outcome(world.session, sid)
        assert outcome is not None and outcome.level is OutcomeLevel.UNACCEPTABLE_VARIATION

    def test_refusals(self, world: World) -> None:
        sid = world.decided(OutcomeLevel.PER_PROTOCOL)
        with pytest.raises(MappingReviewError, match=f"submission {sid} has no structure-name mapping to confirm"):
            confirm_mapping(world.session, submission_id=sid, actor="qa")
        _structure(world, sid, "Heart", "heart", "same name ignoring case and punctuation")
        with pytest.raises(MappingReviewError, match="a flag needs a note"):
            flag_mapping(world.session, submission_id=sid, submitted="heart", tg263="Heart", note=" ", actor="qa")
        with pytest.raises(MappingReviewError, match=r"has no row heart -> Lung_L"):
            flag_mapping(world.session, submission_id=sid, submitted="heart", tg263="Lung_L", note="x", actor="qa")
        with pytest.raises(UnknownMappingSubmissionError, match="submission 999 does not exist"):
            confirm_mapping(world.session, submission_id=999, actor="qa")
        events = world.session.exec(select(AuditEvent).where(AuditEvent.action.startswith("mapping."))).all()
        assert events == []
