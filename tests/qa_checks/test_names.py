"""TG-263 name mapping: synonyms, laterality, PRV margins, targets, ambiguity, conflicts, unmatched."""

from __future__ import annotations

import pytest

from qa_checks.names import map_structure_names, normalise_name, tg263_names

MATCHES = [
    ("SpinalCord", "SpinalCord"),
    ("Cord", "SpinalCord"),
    ("SPINAL CORD", "SpinalCord"),
    ("spinal_cord", "SpinalCord"),
    ("Cord_PRV5", "SpinalCord_PRV05"),
    ("Spinal Cord PRV 5mm", "SpinalCord_PRV05"),
    ("cord prv 0.5cm", "SpinalCord_PRV05"),
    ("SpinalCord_PRV05", "SpinalCord_PRV05"),
    ("Cord PRV", "SpinalCord_PRV"),
    ("Lt Lung", "Lung_L"),
    ("Lung Left", "Lung_L"),
    ("LUNG_R", "Lung_R"),
    ("Right lung", "Lung_R"),
    ("LtLung", "Lung_L"),
    ("LungL", "Lung_L"),
    ("L Lung", "Lung_L"),
    ("Lung-R", "Lung_R"),
    ("Lungs", "Lungs"),
    ("Both Lungs", "Lungs"),
    ("Oesophagus", "Esophagus"),
    ("Brain Stem", "Brainstem"),
    ("BrainStem", "Brainstem"),
    ("Chiasm", "OpticChiasm"),
    ("Optic Nerve L", "OpticNrv_L"),
    ("OpticNrv_R", "OpticNrv_R"),
    ("Femoral head R", "Femur_Head_R"),
    ("Femur_Head_L", "Femur_Head_L"),
    ("Seminal vesicles", "SeminalVes"),
    ("Rt Kidney", "Kidney_R"),
    ("Brachial Plexus Lt PRV 3mm", "BrachialPlex_L_PRV03"),
    ("Small Bowel", "Bowel_Small"),
    ("Cauda Equina", "CaudaEquina"),
    ("External", "Body"),
    ("PTV", "PTV"),
    ("ptv", "PTV"),
]


class TestSingleNames:
    @pytest.mark.parametrize(("submitted", "expected"), MATCHES)
    def test_maps(self, submitted: str, expected: str) -> None:
        mapping = map_structure_names([submitted])
        assert mapping.as_dict() == {submitted: expected}
        assert not mapping.unmatched and not mapping.ambiguous and not mapping.conflicts

    @pytest.mark.parametrize(
        "submitted", ["z_ring", "Heart L", "cord prv 2.5mm", "opt PTV", "", "Lens Both", "Cochlear", "LUNGL"]
    )
    def test_unmatched(self, submitted: str) -> None:
        mapping = map_structure_names([submitted])
        assert mapping.unmatched == (submitted,)
        assert not mapping.matches

    @pytest.mark.parametrize(
        ("submitted", "candidates"),
        [
            ("Lung", ("Lung_L", "Lung_R")),
            ("Optic Nerve", ("OpticNrv_L", "OpticNrv_R")),
            ("Parotid PRV5", ("Parotid_L_PRV05", "Parotid_R_PRV05")),
        ],
    )
    def test_missing_laterality_is_ambiguous(self, submitted: str, candidates: tuple[str, ...]) -> None:
        mapping = map_structure_names([submitted])
        assert dict(mapping.ambiguous) == {submitted: candidates}
        assert not mapping.matches

    def test_reasons_explain_the_rule(self) -> None:
        reasons = {m.submitted: m.reason for m in map_structure_names(["SpinalCord", "Cord_PRV5", "Lt Lung"]).matches}
        assert reasons["SpinalCord"] == "exact"
        assert reasons["Cord_PRV5"] == "synonym of SpinalCord; PRV margin 5 mm"
        assert reasons["Lt Lung"] == "TG-263 name Lung; laterality prefix 'lt'"


class TestTargets:
    def test_only_targets_are_candidates(self) -> None:
        mapping = map_structure_names(["Cord", "Heart", "Oesophagus"], targets=["SpinalCord", "Esophagus"])
        assert mapping.as_dict() == {"Cord": "SpinalCord", "Oesophagus": "Esophagus"}
        assert mapping.unmatched == ("Heart",)
        assert mapping.missing_targets == ()

    def test_target_outside_the_table_matched_by_normalised_name(self) -> None:
        mapping = map_structure_names(["ptv_54gy", "GTV"], targets=["PTV_54Gy", "GTV"])
        assert mapping.as_dict() == {"ptv_54gy": "PTV_54Gy", "GTV": "GTV"}

    def test_missing_targets_listed(self) -> None:
        mapping = map_structure_names(["Cord"], targets=["SpinalCord", "Brainstem", "PTV"])
        assert mapping.missing_targets == ("Brainstem", "PTV")

    def test_side_less_name_stays_ambiguous_even_if_one_side_is_wanted(self) -> None:
        mapping = map_structure_names(["Lung"], targets=["Lung_L"])
        assert dict(mapping.ambiguous) == {"Lung": ("Lung_L", "Lung_R")}
        assert mapping.missing_targets == ("Lung_L",)


class TestConflicts:
    def test_two_names_for_one_target_are_reported_not_resolved(self) -> None:
        mapping = map_structure_names(["Cord", "SpinalCord", "Lt Lung"])
        assert dict(mapping.conflicts) == {"SpinalCord": ("Cord", "SpinalCord")}
        assert mapping.as_dict() == {"Lt Lung": "Lung_L"}

    def test_repeated_submitted_name(self) -> None:
        mapping = map_structure_names(["Heart", "Heart"])
        assert dict(mapping.conflicts) == {"Heart": ("Heart", "Heart")}
        assert not mapping.matches

    def test_every_name_lands_in_exactly_one_bucket(self) -> None:
        names = ["Cord", "SpinalCord", "Lung", "z_ring", "Heart", "Lt Lung"]
        mapping = map_structure_names(names)
        seen = (
            [m.submitted for m in mapping.matches]
            + list(mapping.unmatched)
            + list(mapping.ambiguous)
            + [n for ns in mapping.conflicts.values() for n in ns]
        )
        assert sorted(seen) == sorted(names)


class TestTable:
    def test_primary_names_present(self) -> None:
        names = set(tg263_names())
        for expected in (
            "SpinalCord",
            "Brainstem",
            "Lung_L",
            "Lung_R",
            "Esophagus",
            "Femur_Head_L",
            "OpticChiasm",
            "Body",
        ):
            assert expected in names

    def test_names_fit_tg263_length(self) -> None:
        assert all(len(n) <= 16 for n in tg263_names())  # TG-263: at most 16 characters

    def test_every_table_name_maps_to_itself(self) -> None:
        names = tg263_names()
        mapping = map_structure_names(names)
        assert mapping.as_dict() == {n: n for n in names}

    def test_normalise(self) -> None:
        assert normalise_name(" Spinal_Cord-PRV.5 ") == "spinalcordprv5"


class TestProposals:
    """Rule 5: targets with a dose, number or level suffix, and motion-management targets, are proposed for the
    reviewer to confirm, never matched."""

    @pytest.mark.parametrize(
        ("submitted", "tg263", "reason"),
        [
            ("PTV_5400", "PTV", "PTV_5400 looks like PTV with a dose suffix '5400': confirm"),
            ("PTV54", "PTV", "PTV54 looks like PTV with a dose suffix '54': confirm"),
            ("PTV_54Gy", "PTV", "PTV_54Gy looks like PTV with a dose suffix '54Gy': confirm"),
            ("PTV1", "PTV", "PTV1 looks like PTV with a number suffix '1': confirm"),
            ("PTV_2", "PTV", "PTV_2 looks like PTV with a number suffix '2': confirm"),
            ("PTV_High", "PTV", "PTV_High looks like PTV with a dose-level suffix 'High': confirm"),
            ("gtv 2", "GTV", "gtv 2 looks like GTV with a number suffix '2': confirm"),
        ],
    )
    def test_suffixed_target_is_proposed_not_matched(self, submitted: str, tg263: str, reason: str) -> None:
        mapping = map_structure_names([submitted], targets=["GTV", "PTV", "SpinalCord"])
        assert not mapping.matches and not mapping.unmatched and not mapping.ambiguous
        assert [(m.submitted, m.tg263, m.reason, m.status) for m in mapping.proposed] == [
            (submitted, tg263, reason, "proposed")
        ]
        assert tg263 in mapping.missing_targets  # a proposal does not supply the target

    def test_proposed_without_targets(self) -> None:
        mapping = map_structure_names(["PTV_5400"])
        assert mapping.as_dict() == {}
        assert [(m.tg263, m.status) for m in mapping.proposed] == [("PTV", "proposed")]

    @pytest.mark.parametrize("submitted", ["ITV", "iGTV", "Internal Target Volume"])
    def test_motion_target_is_proposed_for_gtv_not_equated(self, submitted: str) -> None:
        mapping = map_structure_names([submitted], targets=["GTV", "PTV"])
        assert mapping.as_dict() == {}
        (proposal,) = mapping.proposed
        assert proposal.tg263 == "GTV" and proposal.status == "proposed"
        assert "TG-263 target in its own right" in proposal.reason and "confirm it stands for GTV" in proposal.reason

    def test_motion_targets_are_names_of_their_own(self) -> None:
        mapping = map_structure_names(["ITV", "iGTV"])
        assert mapping.as_dict() == {"ITV": "ITV", "iGTV": "IGTV"}
        assert map_structure_names(["iGTV"], targets=["ITV", "PTV"]).as_dict() == {}  # iGTV is not the ITV

    def test_itv_with_gtv_and_ctv_wanted_is_ambiguous(self) -> None:
        mapping = map_structure_names(["ITV"], targets=["GTV", "CTV", "PTV"])
        assert dict(mapping.ambiguous) == {"ITV": ("GTV", "CTV")}
        assert not mapping.proposed and not mapping.matches

    def test_no_proposal_for_a_target_already_matched(self) -> None:
        mapping = map_structure_names(["PTV", "PTV_2", "PTV_5400"], targets=["PTV"])
        assert mapping.as_dict() == {"PTV": "PTV"}
        assert mapping.unmatched == ("PTV_2", "PTV_5400") and not mapping.proposed

    def test_exact_and_synonym_matches_unchanged(self) -> None:
        mapping = map_structure_names(["PTV", "Cord", "ptv_54gy"], targets=["PTV", "SpinalCord", "PTV_54Gy"])
        assert mapping.as_dict() == {"PTV": "PTV", "Cord": "SpinalCord", "ptv_54gy": "PTV_54Gy"}
        assert all(m.status == "matched" for m in mapping.matches) and not mapping.proposed

    @pytest.mark.parametrize("submitted", ["PTV_opt", "PTV ring", "PTVeval", "z_PTV54", "PTV_L"])
    def test_other_suffixes_stay_unmatched(self, submitted: str) -> None:
        mapping = map_structure_names([submitted], targets=["PTV"])
        assert mapping.unmatched == (submitted,) and not mapping.proposed

    def test_confirmed_proposal_becomes_a_match(self) -> None:
        mapping = map_structure_names(["PTV_5400", "GTV"], targets=["GTV", "PTV"], confirmed={"PTV_5400": "PTV"})
        assert mapping.as_dict() == {"PTV_5400": "PTV", "GTV": "GTV"}
        (confirmed,) = [m for m in mapping.matches if m.submitted == "PTV_5400"]
        assert confirmed.status == "confirmed"
        assert confirmed.reason == (
            "PTV_5400 looks like PTV with a dose suffix '5400': confirm; confirmed by the reviewer"
        )
        assert not mapping.proposed and mapping.missing_targets == ()

    def test_two_confirmed_names_for_one_target_conflict(self) -> None:
        mapping = map_structure_names(["PTV1", "PTV2"], confirmed={"PTV1": "PTV", "PTV2": "PTV"})
        assert dict(mapping.conflicts) == {"PTV": ("PTV1", "PTV2")} and not mapping.matches

    @pytest.mark.parametrize("confirmed", [{"PTV_5400": "GTV"}, {"Cord": "SpinalCord"}, {"z_ring": "PTV"}])
    def test_confirming_something_not_proposed_is_refused(self, confirmed: dict[str, str]) -> None:
        with pytest.raises(ValueError, match=r"^confirmed: .* is not a proposal of this mapping \(proposals: "):
            map_structure_names(["PTV_5400", "Cord", "z_ring"], confirmed=confirmed)

    def test_every_name_lands_in_exactly_one_bucket(self) -> None:
        names = ["PTV_5400", "PTV", "PTV_2", "ITV", "Lung", "z_ring", "GTV_High"]
        mapping = map_structure_names(names, targets=["PTV", "GTV", "Lung_L", "Lung_R"])
        seen = (
            [m.submitted for m in mapping.matches]
            + [m.submitted for m in mapping.proposed]
            + list(mapping.unmatched)
            + list(mapping.ambiguous)
            + [n for ns in mapping.conflicts.values() for n in ns]
        )
        assert sorted(seen) == sorted(names)
