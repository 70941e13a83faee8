"""Reports of a study: tables, scaling-law fits, data-savings factors, figures, Markdown/HTML.

Reads the results table only (one :class:`pdefm.study.row.ResultRow` per run record, read by
attribute) and never imports torch, so a report can be built on any machine with numpy and
matplotlib.
"""

from pdefm.report.analysis import headline
from pdefm.report.fits import PowerLawFit, fit_power_law
from pdefm.report.savings import data_savings
from pdefm.report.write import write_report

__all__ = ["PowerLawFit", "data_savings", "fit_power_law", "headline", "write_report"]
