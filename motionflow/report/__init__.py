"""The HTML gallery of a recipe's results: ``out/<recipe>/index.html`` (``motionflow report``)."""

from __future__ import annotations

from motionflow.report.build import Report, write_report

__all__ = ["Report", "write_report"]
