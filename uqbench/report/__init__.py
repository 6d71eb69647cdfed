"""The self-contained HTML report of a run directory.

>>> from uqbench.report import write_report
>>> write_report("reports/run-...")          # writes reports/run-.../index.html

:mod:`~uqbench.report.data` builds plain dicts from the results table and saved arrays,
:mod:`~uqbench.report.figures` draws them as inline SVG, :mod:`~uqbench.report.render`
fills the Jinja2 templates shipped in ``templates/``.
"""

from uqbench.report.data import build_report_data
from uqbench.report.render import render_html, write_report

__all__ = ["build_report_data", "render_html", "write_report"]
