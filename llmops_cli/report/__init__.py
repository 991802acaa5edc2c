"""All output formatting: the terminal (rich, :mod:`.terminal`), the report
files — the Markdown summary and PR comment (:mod:`.markdown`), JUnit XML and
JSON (:mod:`.files`) — and the text both use
(:mod:`.text`).

Nothing here decides anything; it renders :class:`~llmops_cli.gate.comparison.Comparison`
and :class:`~llmops_cli.record.schema.RunRecord` objects.
"""

from llmops_cli.report.files import comparison_json, junit_xml
from llmops_cli.report.markdown import MARKER_PREFIX, comment_body, comment_marker, markdown, no_verdict_comment
from llmops_cli.report.terminal import VERDICT_STYLE, print_agreement, print_cache_info, print_changed_cases, print_comparison, print_error, print_outcome, print_record_slices, print_run_summary, print_scorers, print_slices, terminal
from llmops_cli.report.text import case_reason, fmt, fmt_ci, fmt_mde, fmt_p, gate_rule_text, metric_notes, slice_cell, slice_tables, usage_line

__all__ = ["MARKER_PREFIX", "VERDICT_STYLE", "case_reason", "comment_body", "comment_marker", "comparison_json", "fmt",
           "fmt_ci", "fmt_mde", "fmt_p", "gate_rule_text", "junit_xml", "markdown", "metric_notes", "no_verdict_comment",
           "print_agreement", "print_cache_info", "print_changed_cases", "print_comparison", "print_error", "print_outcome",
           "print_record_slices", "print_run_summary", "print_scorers", "print_slices", "slice_cell", "slice_tables",
           "terminal", "usage_line"]
