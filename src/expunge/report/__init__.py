"""Reports: one ReportData record rendered as JSON, Markdown and standalone HTML with plots."""

from expunge.report.data import TABLE_COLUMNS, ReportData, report_from_verification
from expunge.report.render import format_value, to_html, to_json, to_markdown, write_report

__all__ = ["TABLE_COLUMNS", "ReportData", "format_value", "report_from_verification", "to_html", "to_json",
           "to_markdown", "write_report"]
