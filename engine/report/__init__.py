"""The static HTML report: audit results, dataset plots and a gallery of annotated clips."""

from engine.report.report import build_report

__all__ = ["build_report"]
