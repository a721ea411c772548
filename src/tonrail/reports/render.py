"""A report as CSV (one table: the section name, then its columns) or as a PDF (fpdf2)."""

from __future__ import annotations

import csv
import io

from fpdf import FPDF
from fpdf.fonts import FontFace

from tonrail.reports.contents import Report

FORMATS = ("csv", "pdf")


def to_csv(report: Report) -> bytes:
    """Every section: a header row `section,<columns>` then `<name>,<values>` rows."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["report", report.title])
    out.writerow(["period_start", report.period.start.strftime("%Y-%m-%d %H:%M:%S")])
    out.writerow(["period_end", report.period.end.strftime("%Y-%m-%d %H:%M:%S")])
    out.writerow(["generated_at", report.generated_at.strftime("%Y-%m-%d %H:%M:%S")])
    for section in report.sections:
        out.writerow(["section", *section.columns])
        for row in section.rows:
            out.writerow([section.name, *row])
    return buf.getvalue().encode()


def _latin(text: str) -> str:
    # The core PDF fonts are Latin-1: anything else is shown as '?', never an error.
    return text.encode("latin-1", "replace").decode("latin-1")


def to_pdf(report: Report) -> bytes:
    """A landscape A4 document: a title, then each section as a titled table."""
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title(report.title)
    pdf.set_creator("tonrail")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    span = (
        f"{report.period.start:%Y-%m-%d %H:%M} to {report.period.end:%Y-%m-%d %H:%M} UTC, "
        f"generated {report.generated_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    pdf.cell(0, 6, span, new_x="LMARGIN", new_y="NEXT")
    for section in report.sections:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _latin(section.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=7)
        if not section.rows:
            pdf.cell(0, 5, "none", new_x="LMARGIN", new_y="NEXT")
            continue
        heading = FontFace(emphasis="BOLD", fill_color=(225, 230, 240))
        widths = _widths(section.columns, section.rows)
        with pdf.table(headings_style=heading, line_height=4.5, col_widths=widths) as table:
            table.row([_latin(c) for c in section.columns])
            for values in section.rows:
                table.row([_latin(v) for v in values])
    return bytes(pdf.output())


def _widths(columns: list[str], rows: list[list[str]]) -> tuple[int, ...]:
    """Relative column widths from the longest text in each column, so ids and addresses
    stay on one line where the page allows."""
    longest = [len(c) for c in columns]
    for row in rows:
        longest = [max(n, len(v)) for n, v in zip(longest, row, strict=True)]
    return tuple(min(max(n + 2, 8), 52) for n in longest)


def render(report: Report, fmt: str) -> bytes:
    return to_pdf(report) if fmt == "pdf" else to_csv(report)
