"""Map submitted structure names to AAPM TG-263 names, and show why.

The shipped table (``qa_checks/data/tg263.csv``) is a SABR/SRS-relevant subset of TG-263 primary names with the
synonyms centres use. Matching rules, applied to each submitted (3006,0026) *ROIName*:

1. **Normalisation**: case, spaces, ``_``, ``-``, ``.`` and other punctuation are ignored
   (``"SPINAL_CORD"`` = ``"Spinal Cord"`` = ``"spinalcord"``).
2. **PRV margin**: a trailing ``PRV``, optionally followed by a margin in mm or cm (``"Cord_PRV5"``,
   ``"Spinal Cord PRV 5mm"``, ``"cord prv 0.5cm"``), becomes the TG-263 suffix ``_PRVxx`` with the margin in
   whole mm on two digits (``SpinalCord_PRV05``); without a margin the suffix is ``_PRV``. A margin that is not
   a whole number of mm leaves the name unmatched.
3. **Laterality**: ``Left``/``Lt``/``L`` or ``Right``/``Rt``/``R`` as a prefix or suffix gives ``_L``/``_R``
   (``"Lt Lung"``, ``"Lung Left"``, ``"LUNG_L"`` -> ``Lung_L``). A lateral organ given without a side
   (``"Lung"``) is **ambiguous** between ``_L`` and ``_R``; a side on an organ that has none is unmatched.
4. **Synonyms** from the table (``"Oesophagus"`` -> ``Esophagus``, ``"Chiasm"`` -> ``OpticChiasm``, ...).
5. **Proposals, never matches**: a name the rules above do not match is *proposed* for the reviewer to confirm
   when it looks like a target volume with a suffix: a dose (``"PTV_5400"``, ``"PTV54"``, ``"PTV_54Gy"``), a
   number (``"PTV1"``, ``"PTV_2"``) or a dose level (``"PTV_High"``, ``"PTV_low"``) after ``GTV``, ``CTV``,
   ``ITV``, ``IGTV`` or ``PTV``. The motion-management targets ``ITV`` and ``IGTV`` are TG-263 targets in their
   own right, not synonyms of the GTV: when the wanted ``targets`` lack them, an ``ITV`` is proposed for a wanted
   ``GTV`` or ``CTV`` and an ``IGTV`` for a wanted ``GTV``. A proposal is not made for a target that another
   submitted name already matches. Proposals go to ``proposed`` with their reason (``"PTV_5400 looks like PTV
   with a dose suffix '5400': confirm"``); callers that score treat them as unmatched until the reviewer confirms
   them (the ``confirmed`` argument of :func:`map_structure_names`).

With ``targets`` (e.g. a protocol's required structures) only those names are candidates; a target that is not
in the shipped table is still matched by normalised equality (rule 1). Nothing is chosen silently: a name with
several candidates goes to ``ambiguous``, and several submitted names mapping to one TG-263 name go to
``conflicts`` (and not to ``matches``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Final, Literal

__all__ = [
    "MatchStatus",
    "NameMapping",
    "NameMatch",
    "TG263Entry",
    "map_structure_names",
    "normalise_name",
    "tg263_names",
]

_LATERALITY_WORDS: Final[tuple[tuple[str, str], ...]] = (
    ("left", "L"),
    ("right", "R"),
    ("lt", "L"),
    ("rt", "R"),
    ("l", "L"),
    ("r", "R"),
)
"""Normalised laterality words and the TG-263 side suffix they give; longer words are tried first."""

_TARGET_WITH_SUFFIX: Final = re.compile(
    r"^(?P<kind>igtv|gtv|ctv|itv|ptv)[\s_\-.]*"
    r"(?:(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>c?gy)?|(?P<level>high|low|mid|intermediate|hi|lo|boost))$",
    re.IGNORECASE,
)
"""A target volume name followed by a dose (``PTV_5400``, ``PTV54``, ``PTV_54Gy``), a number (``PTV1``,
``PTV_2``) or a dose level (``PTV_High``): rule 5, proposed, never matched."""

_TARGET_KINDS: Final[dict[str, str]] = {"gtv": "GTV", "ctv": "CTV", "itv": "ITV", "igtv": "IGTV", "ptv": "PTV"}
"""Normalised target-volume word -> TG-263 target name."""

_MOTION_STAND_INS: Final[dict[str, tuple[str, ...]]] = {"ITV": ("GTV", "CTV"), "IGTV": ("GTV",)}
"""Motion-management targets -> the wanted targets they may be proposed for (never equated with)."""

_NUMBER_SUFFIX_MAX: Final = 10.0
"""A bare number below this after a target word (``PTV1``, ``PTV_2``) reads as a numbered target; from it on
(``PTV54``, ``PTV_5400``) as a dose."""

MatchStatus = Literal["matched", "proposed", "confirmed"]
"""How a :class:`NameMatch` was reached: ``"matched"`` by rules 1-4; ``"proposed"`` by rule 5, awaiting the
reviewer; ``"confirmed"``: a proposal the reviewer confirmed."""

_PRV_SUFFIX = re.compile(r"[\s_\-.]*prv[\s_\-]*(?P<margin>\d+(?:\.\d+)?)?\s*(?P<unit>mm|cm)?\s*$", re.IGNORECASE)


def normalise_name(name: str) -> str:
    """Lower-case ``name`` and drop everything but letters and digits (``"Spinal_Cord"`` -> ``"spinalcord"``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True)
class TG263Entry:
    """One row of the shipped table.

    Attributes:
        name: primary name; for a lateral organ the stem without ``_L``/``_R`` (e.g. ``"Lung"``).
        lateral: True when the TG-263 names are ``<name>_L`` and ``<name>_R``.
        region: anatomical region (thorax, abdomen, pelvis, head, spine, target, all).
        synonyms: names used by centres, without laterality or PRV margin.
    """

    name: str
    lateral: bool
    region: str
    synonyms: tuple[str, ...]

    @property
    def tg263_names(self) -> tuple[str, ...]:
        """The TG-263 names this row stands for."""
        return (f"{self.name}_L", f"{self.name}_R") if self.lateral else (self.name,)


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[TG263Entry, ...], dict[str, TG263Entry]]:
    text = resources.files("qa_checks").joinpath("data/tg263.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#"))))
    entries = []
    by_key: dict[str, TG263Entry] = {}
    for row in rows:
        entry = TG263Entry(
            name=row["tg263"].strip(),
            lateral=row["lateral"].strip().lower() == "yes",
            region=row["region"].strip(),
            synonyms=tuple(s.strip() for s in row["synonyms"].split(";") if s.strip()),
        )
        entries.append(entry)
        for alias in (entry.name, *entry.synonyms):
            key = normalise_name(alias)
            other = by_key.get(key)
            if other is not None and other is not entry:
                raise ValueError(f"tg263.csv: {alias!r} is listed for both {other.name!r} and {entry.name!r}")
            by_key[key] = entry
    return tuple(entries), by_key


def tg263_names() -> tuple[str, ...]:
    """Every TG-263 name in the shipped subset (lateral organs give both sides)."""
    return tuple(n for entry in _table()[0] for n in entry.tg263_names)


@dataclass(frozen=True)
class NameMatch:
    """A submitted name and the TG-263 name it maps to, with the rule(s) that matched, for the reviewer.

    Attributes:
        submitted: the (3006,0026) *ROIName* as submitted.
        tg263: the TG-263 name.
        reason: why, e.g. ``"synonym of SpinalCord; PRV margin 5 mm"``.
        status: ``"matched"``, ``"proposed"`` (awaiting the reviewer: treat as unmatched) or ``"confirmed"``
            (see :data:`MatchStatus`).
    """

    submitted: str
    tg263: str
    reason: str
    status: MatchStatus = "matched"


@dataclass(frozen=True)
class NameMapping:
    """Result of :func:`map_structure_names`.

    Attributes:
        matches: one per submitted name with exactly one candidate and no conflict, in submission order.
        unmatched: submitted names with no candidate.
        ambiguous: submitted name -> its candidate TG-263 names (two or more); none is chosen.
        conflicts: TG-263 name -> the submitted names that all map to it; none of them is in ``matches``.
        missing_targets: requested targets no submitted name maps to (empty when ``targets`` was None); a target
            with only a proposal is still missing.
        proposed: rule-5 proposals awaiting the reviewer (``status="proposed"``), in submission order; not in
            ``matches``.
    """

    matches: tuple[NameMatch, ...]
    unmatched: tuple[str, ...]
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    missing_targets: tuple[str, ...] = ()
    proposed: tuple[NameMatch, ...] = ()

    def as_dict(self) -> dict[str, str]:
        """``{submitted: tg263}`` for the unambiguous matches."""
        return {m.submitted: m.tg263 for m in self.matches}


def _split_prv(name: str) -> tuple[str, str | None, str | None]:
    """(name without PRV suffix, TG-263 PRV suffix or None, reason); suffix ``""`` marks an invalid margin."""
    found = _PRV_SUFFIX.search(name)
    if found is None or found.start() == 0:
        return name, None, None
    base = name[: found.start()]
    margin = found.group("margin")
    if margin is None:
        return base, "_PRV", "PRV without margin"
    margin_mm = float(margin) * (10.0 if (found.group("unit") or "mm").lower() == "cm" else 1.0)
    if abs(margin_mm - round(margin_mm)) > 1e-9 or margin_mm >= 100:
        return base, "", f"PRV margin {margin_mm:g} mm is not a whole number of mm below 100"
    return base, f"_PRV{round(margin_mm):02d}", f"PRV margin {round(margin_mm)} mm"


_SINGLE_LETTER_PREFIX = re.compile(r"^[LlRr](?:[\s_\-.]+|(?=[A-Z][a-z]))")
_SINGLE_LETTER_SUFFIX = re.compile(r"(?:[\s_\-.][LlRr]|(?<=[a-z])[LR])$")


def _split_laterality(stem: str, by_key: Mapping[str, TG263Entry]) -> list[tuple[TG263Entry, str | None, str, str]]:
    """Interpretations (entry, side, key without the side word, reason) of a name without PRV suffix.

    ``Left``/``Lt``/``Right``/``Rt`` may be glued to the organ (``"LtLung"``); a single ``L``/``R`` must be set
    apart by a separator or a case change (``"Lung_L"``, ``"Lung L"``, ``"LungL"``), so that a name merely
    ending in "r" or "l" (``"Cochlear"``) is not read as a side.
    """
    key = normalise_name(stem)
    entry = by_key.get(key)
    if entry is not None:
        return [(entry, None, key, "")]
    found: list[tuple[TG263Entry, str | None, str, str]] = []
    for word, side in _LATERALITY_WORDS:
        for rest, where in ((key[len(word) :], "prefix"), (key[: -len(word)], "suffix")):
            if where == "prefix" and not key.startswith(word):
                continue
            if where == "suffix" and not key.endswith(word):
                continue
            if len(word) == 1 and not (_SINGLE_LETTER_PREFIX if where == "prefix" else _SINGLE_LETTER_SUFFIX).search(
                stem.strip()
            ):
                continue
            entry = by_key.get(rest)
            if entry is not None and all(e is not entry or s != side for e, s, _, _ in found):
                found.append((entry, side, rest, f"laterality {where} {word!r}"))
    return found


def _candidates(name: str) -> tuple[list[tuple[str, str]], str | None]:
    """TG-263 candidates ``(tg263, reason)`` for one submitted name, and an optional reason for none."""
    _, by_key = _table()
    stem, prv, prv_reason = _split_prv(name.strip())
    if prv == "":
        return [], prv_reason
    out: list[tuple[str, str]] = []
    for entry, side, rest, lat_reason in _split_laterality(stem, by_key):
        if entry.lateral and side is None:
            sides: tuple[str | None, ...] = ("L", "R")
        elif not entry.lateral and side is not None:
            continue  # e.g. "Heart L": a side on an organ without one
        else:
            sides = (side,)
        for s in sides:
            candidate = f"{entry.name}{f'_{s}' if s else ''}{prv or ''}"
            if name.strip() == candidate:
                reasons = ["exact"]
            elif normalise_name(name) == normalise_name(candidate):
                reasons = ["same name ignoring case and punctuation"]
            else:
                how = "TG-263 name" if rest == normalise_name(entry.name) else "synonym of"
                reasons = [f"{how} {entry.name}", lat_reason, prv_reason or ""]
                if entry.lateral and side is None:
                    reasons.append("no laterality given")
            out.append((candidate, "; ".join(r for r in reasons if r)))
    return out, None


def _proposals(name: str, candidates: list[tuple[str, str]], wanted: set[str] | None) -> list[tuple[str, str]]:
    """Rule 5: ``(tg263, reason)`` proposals for a name that rules 1-4 left without a wanted candidate.

    ``candidates`` are the name's rule 1-4 candidates over the whole table (used for ``ITV``/``IGTV``), ``wanted``
    the wanted targets (None: every name).
    """
    stripped = name.strip()
    found = _TARGET_WITH_SUFFIX.match(stripped)
    if found is not None:
        kind = _TARGET_KINDS[found.group("kind").lower()]
        if found.group("level") is not None:
            what = f"a dose-level suffix {found.group('level')!r}"
        elif found.group("unit") is not None or float(found.group("number")) >= _NUMBER_SUFFIX_MAX:
            what = f"a dose suffix {stripped[len(found.group('kind')) :].lstrip(' _-.')!r}"
        else:
            what = f"a number suffix {found.group('number')!r}"
        base = f"{stripped} looks like {kind} with {what}"
    else:
        kinds = [c for c, _ in candidates if c in _MOTION_STAND_INS]
        if len(kinds) != 1:
            return []
        kind, base = kinds[0], ""
    if wanted is None or kind in wanted:
        return [(kind, f"{base}: confirm")] if base else []
    out = []
    for stand_in in _MOTION_STAND_INS.get(kind, ()):
        if stand_in in wanted:
            why = (
                f"{kind} is a TG-263 target in its own right (motion management), not a synonym of {stand_in}: "
                f"confirm it stands for {stand_in}"
            )
            out.append((stand_in, f"{base}; {why}" if base else f"{stripped}: {why}"))
    return out


def map_structure_names(
    submitted: Iterable[str],
    *,
    targets: Iterable[str] | None = None,
    confirmed: Mapping[str, str] | None = None,
) -> NameMapping:
    """Map submitted structure names to TG-263 names (rules in the module docstring).

    Args:
        submitted: (3006,0026) *ROIName* values as submitted.
        targets: the TG-263 names wanted (e.g. a protocol's required structures); None for the whole shipped
            subset (plus any PRV variant of it).
        confirmed: ``{submitted name: TG-263 name}`` proposals the reviewer has confirmed; each becomes a match
            with ``status="confirmed"``.

    Returns:
        A :class:`NameMapping`; every submitted name ends up in exactly one of ``matches``, ``unmatched``,
        ``ambiguous``, ``conflicts`` or ``proposed``.

    Raises:
        ValueError: a ``confirmed`` entry is not a proposal of this mapping.
    """
    names = list(submitted)
    target_list = list(dict.fromkeys(targets)) if targets is not None else None
    target_set = set(target_list) if target_list is not None else None

    chosen: dict[str, tuple[str, str]] = {}
    status: dict[str, MatchStatus] = {}
    proposals: dict[str, tuple[str, str]] = {}
    unmatched: list[str] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    for name in names:
        candidates, _ = _candidates(name)
        all_candidates = list(candidates)
        lateral_unknown = any("no laterality given" in reason for _, reason in candidates)
        if target_set is not None and target_list is not None:
            direct = [
                (t, "exact" if t == name else "same name ignoring case and punctuation")
                for t in target_list
                if normalise_name(t) == normalise_name(name)
            ]
            candidates = direct + [(c, r) for c, r in candidates if c in target_set and c not in dict(direct)]
            if direct:
                lateral_unknown = False
        distinct = list(dict.fromkeys(c for c, _ in candidates))
        if lateral_unknown and distinct:
            # A side-less lateral organ is never resolved, even if only one side is wanted.
            ambiguous[name] = tuple(distinct) if len(distinct) > 1 else _both_sides(distinct[0])
        elif len(distinct) == 1:
            chosen[name] = (distinct[0], dict(candidates)[distinct[0]])
        elif len(distinct) > 1:
            ambiguous[name] = tuple(distinct)
        else:
            offered = _proposals(name, all_candidates, target_set)
            if len(offered) == 1:
                proposals[name] = offered[0]
            elif offered:
                ambiguous[name] = tuple(t for t, _ in offered)
            else:
                unmatched.append(name)

    for name, tg263 in (confirmed or {}).items():
        if proposals.get(name, ("",))[0] != tg263:
            offered_text = ", ".join(f"{n!r} -> {t!r}" for n, (t, _) in proposals.items()) or "none"
            raise ValueError(
                f"confirmed: {name!r} -> {tg263!r} is not a proposal of this mapping (proposals: {offered_text})"
            )
        chosen[name] = (tg263, f"{proposals.pop(name)[1]}; confirmed by the reviewer")
        status[name] = "confirmed"

    by_target: dict[str, list[str]] = {}
    for name, (tg263, _) in chosen.items():
        by_target.setdefault(tg263, []).append(name)
    duplicated_names = [n for n in dict.fromkeys(names) if names.count(n) > 1 and n in chosen]
    conflicts = {t: tuple(ns) for t, ns in by_target.items() if len(ns) > 1}
    for n in duplicated_names:
        conflicts[chosen[n][0]] = tuple(x for x in names if chosen.get(x, ("",))[0] == chosen[n][0])
    matches = tuple(
        NameMatch(submitted=name, tg263=tg263, reason=reason, status=status.get(name, "matched"))
        for name, (tg263, reason) in chosen.items()
        if tg263 not in conflicts
    )
    matched_targets = {m.tg263 for m in matches} | set(conflicts)
    # A proposal for a target another name already matches is no proposal: that name stays unmatched.
    taken = {n for n, (t, _) in proposals.items() if t in matched_targets}
    unmatched_set = set(unmatched) | taken
    missing = tuple(t for t in target_list if t not in matched_targets) if target_list is not None else ()
    return NameMapping(
        matches=matches,
        unmatched=tuple(n for n in names if n in unmatched_set),
        ambiguous=ambiguous,
        conflicts=conflicts,
        missing_targets=missing,
        proposed=tuple(
            NameMatch(submitted=n, tg263=t, reason=r, status="proposed")
            for n, (t, r) in proposals.items()
            if n not in taken
        ),
    )


def _both_sides(name: str) -> tuple[str, ...]:
    """``Lung_L`` -> (``Lung_L``, ``Lung_R``), keeping any PRV suffix."""
    match = re.match(r"^(?P<stem>.+)_(?P<side>[LR])(?P<prv>_PRV\d*)?$", name)
    if match is None:
        return (name,)
    stem, prv = match.group("stem"), match.group("prv") or ""
    return (f"{stem}_L{prv}", f"{stem}_R{prv}")
