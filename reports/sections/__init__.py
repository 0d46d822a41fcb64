"""The report's sections, one module per group, each section a `reports.page.Builder`: `builder(page)` gives its
`Section` from the run folder as read once (`reports.page.Page`).

`PAGE` is the page order, declared here only; `SECTION_IDS` are the sections' HTML ids in that order.
"""

from segbench.reports.page import Builder
from segbench.reports.sections import (
    adversarial,
    calibration,
    deployment,
    efficiency,
    evaluation,
    gallery,
    provenance,
    real_world,
    robustness,
)

PAGE: tuple[Builder, ...] = (
    provenance.run_summary,
    provenance.models,
    robustness.table5,
    robustness.scores,
    robustness.severity_curves,
    calibration.calibration,
    real_world.real_world,
    real_world.prediction,
    adversarial.adversarial,
    robustness.class_iou,
    efficiency.efficiency_table,
    efficiency.efficiency_curves,
    deployment.deployment,
    evaluation.evaluation_time,
    gallery.gallery,
    evaluation.cell_warnings,
    evaluation.regression_history,
)
"""The report's sections in page order."""

SECTION_IDS = tuple(builder.id for builder in PAGE)
"""HTML ids of the report's sections, in page order (stable: tests and links rely on them)."""

__all__ = ["PAGE", "SECTION_IDS"]
