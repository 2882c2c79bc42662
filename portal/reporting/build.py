"""A submission's report: the facts (:mod:`flows.report_data`), the stage's figures drawn once and cached
(:mod:`portal.reporting.cache`), and the national section (:mod:`portal.reporting.national`, drawn on every view:
it changes whenever another centre is decided, and costs a few tens of milliseconds).

Which figures a report has depends on the stage: contour overlays for the outlining benchmark; the DVH for the
planning benchmark; the DVH, the gamma histogram and the gamma map for the TPS check. A rejected or undecided
submission has no figures (a rejected one shows its reasons only).

Timing: the first view of a decided report draws its figures (about 1 s for the outlining mini case, 1.5-3 s for
the coarse planning and TPS-check cases on two busy cores; clinical-size cases take longer, mostly reading the
DICOM files and recomputing gamma). Later views read the cache (milliseconds).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from sqlmodel import Session

from flows.report_data import ReportFacts, report_facts
from flows.report_figures import FigureData, figure_data
from models.enums import QAStage
from portal.reporting.cache import key_dir, read_manifest, submission_lock, write_report
from portal.reporting.contour_plot import contour_figure
from portal.reporting.dvh_plot import dvh_figure
from portal.reporting.gamma_plot import criteria_label, gamma_histogram_figure, gamma_map_figure
from portal.reporting.national import ReportNational, report_national
from portal.reporting.style import png_bytes
from qa_checks.errors import QAChecksError

__all__ = ["FigureRef", "Report", "build_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FigureRef:
    """A cached figure file of a report, with its section (``dvh``, ``gamma``, ``contours``) and caption."""

    file: str
    section: str
    caption: str
    alt: str


@dataclass(frozen=True)
class Report:
    """What the report page and the PDF show.

    Attributes:
        figures: the stage's cached figures, in order.
        problems: what could not be drawn, in words.
        draw_seconds: how long drawing the figures took when they were drawn (first view), from the manifest.
        timings_s: the figure data's parts (reading files, DVHs, gamma), seconds.
    """

    facts: ReportFacts
    figures: tuple[FigureRef, ...] = ()
    problems: tuple[str, ...] = ()
    national: ReportNational | None = None
    folder: Path | None = None
    draw_seconds: float | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def section(self, name: str) -> list[FigureRef]:
        return [f for f in self.figures if f.section == name]


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3g}"


def _draw(data: FigureData, facts: ReportFacts) -> list[tuple[FigureRef, Figure]]:
    """The stage's figures from their data."""
    out: list[tuple[FigureRef, Figure]] = []
    if data.dvhs:
        planning = facts.stage is QAStage.PLANNING_BENCHMARK
        caption = (
            "DVH of every structure a criterion judges: the centre's plan dose on the centre's structures (solid) "
            "against the reference dose on the reference structures (dashed)"
            if planning
            else "DVH of the protocol's structures (reference contours) in the centre's recalculated dose (solid) and "
            "in the reference dose (dashed)"
        )
        fig = dvh_figure(data.dvhs, submitted_label="submitted plan" if planning else "centre's dose")
        out.append((FigureRef("dvh.png", "dvh", caption, "Dose-volume histograms"), fig))
    if data.histogram and data.gamma is not None:
        caption = f"Gamma histogram as stored by the scorer ({criteria_label(data.gamma.parameters)})"
        out.append(
            (
                FigureRef("gamma-histogram.png", "gamma", caption, "Gamma histogram"),
                gamma_histogram_figure(data.histogram, data.gamma.parameters),
            )
        )
    if data.gamma is not None:
        g = data.gamma
        where = f"the target {g.target}" if g.target else "the maximum reference dose"
        caption = (
            f"Gamma map on the axial slice through {where}, recomputed with the stored parameters "
            f"({criteria_label(g.parameters)}): {g.pass_rate_percent:.2f}% of {g.points} reached points pass"
        )
        out.append((FigureRef("gamma-map.png", "gamma", caption, "Gamma map"), gamma_map_figure(g)))
    values = {(c.structure, c.metric): c.value for c in facts.criteria}
    for i, cut in enumerate(data.contours):
        dice = values.get((cut.structure, "dice"))
        caption = (
            f"{cut.structure}: reference (blue) and the centre's {cut.submitted_name or 'nothing'} (red, dashed) "
            "on the reference CT slice through the reference centroid"
            + (f"; Dice {_fmt(dice)}" if dice is not None else "")
        )
        ref = FigureRef(f"contour-{i:02d}.png", "contours", caption, f"{cut.structure} contours")
        out.append((ref, contour_figure(cut)))
    return out


def _ensure_figures(session: Session, facts: ReportFacts, data_dir: Path) -> tuple[Path, dict[str, Any]]:
    folder = key_dir(data_dir, facts.submission_id, facts.key)
    manifest = read_manifest(folder)
    if manifest is not None:
        return folder, manifest
    with submission_lock(facts.submission_id):
        manifest = read_manifest(folder)  # drawn while we waited
        if manifest is not None:
            return folder, manifest
        start = time.perf_counter()
        data = figure_data(session, facts.submission_id, data_dir=data_dir)
        drawn = _draw(data, facts)
        files = {ref.file: png_bytes(fig) for ref, fig in drawn}
        seconds = round(time.perf_counter() - start, 3)
        manifest = {
            "submission_id": facts.submission_id,
            "key": facts.key,
            "figures": [vars(ref) for ref, _ in drawn],
            "problems": list(data.problems),
            "timings_s": data.timings_s,
            "draw_seconds": seconds,
        }
        write_report(folder, files, manifest)
        logger.info("report of submission %s drawn in %.2f s (%s)", facts.submission_id, seconds, data.timings_s)
        return folder, manifest


def build_report(session: Session, submission_id: int, *, data_dir: Path) -> Report:
    """The report of submission ``submission_id``, drawing and caching its figures on first view.

    A stored file that can no longer be read does not fail the report: the problem is listed and the figures left
    out (nothing is cached, so a later view tries again).

    Raises:
        LookupError: no submission has that id.
    """
    facts = report_facts(session, submission_id, data_dir=data_dir)
    if not facts.decided:
        return Report(facts)
    try:
        folder, manifest = _ensure_figures(session, facts, data_dir)
    except (QAChecksError, OSError, ValueError, KeyError) as err:  # the files, not the request, are at fault
        logger.exception("report of submission %s: figures not drawn: %s", submission_id, err)
        problem = "the figures could not be drawn from the stored files (the QA team can see why in the server log)"
        return Report(facts, problems=(problem,), national=report_national(session, facts))
    return Report(
        facts,
        figures=tuple(FigureRef(**f) for f in manifest["figures"]),
        problems=tuple(manifest.get("problems", [])),
        national=report_national(session, facts, cache_dir=folder),
        folder=folder,
        draw_seconds=manifest.get("draw_seconds"),
        timings_s=dict(manifest.get("timings_s", {})),
    )
