"""HTML reports of benchmark runs: tables (pandas), figures (matplotlib, Agg) and one jinja2 page per run folder.

Reads the run's result files only; imports neither `models` nor `bench` (nor torch).
"""

from segbench._rooms import require_namespace

require_namespace(__name__)

from segbench.reports.render import render_report
from segbench.reports.sections import SECTION_IDS
from segbench.reports.sections.evaluation import evaluation_summary

__all__ = ["SECTION_IDS", "evaluation_summary", "render_report"]
