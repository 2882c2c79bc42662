"""Submission reports and the national view, drawn with matplotlib.

The figure data comes from :mod:`flows.report_figures` and :mod:`flows.report_data` (stored files and results) and
:mod:`models.national` (the national distribution); this package only draws (``*_plot`` modules), caches
(:mod:`portal.reporting.cache`), assembles (:mod:`portal.reporting.build`, :mod:`portal.reporting.national`) and
writes the PDF (:mod:`portal.reporting.pdf`). Nothing here knows about requests: the pages and the API call it.

matplotlib runs headless with the Agg backend, set here before anything draws, and only through ``Figure`` objects
(never ``pyplot``'s global figure state), so requests drawing at the same time do not share a figure. SVG text is
kept as text (``svg.fonttype = none``) so a national figure's labels can be read and checked.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["svg.hashsalt"] = "rtqa"
