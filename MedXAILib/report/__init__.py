"""The one-page case report: what the model said about one case, why, how far to trust it, and what the model is.

- :mod:`.card` — the model card (name, version, training data, intended use, diagnostic-use statement);
- :mod:`.case` — :func:`build_case_report` gathers the numbers (per-class volumes, Dice / HD95 against a reference,
  top classes, the method with its sanity verdict and stability, time and software versions) into a
  :class:`CaseReport`;
- :mod:`.render` — writes it as a self-contained HTML page and a one-page A4 PDF (matplotlib's PDF backend), both
  showing the same images: three orthogonal views (or the X-ray) with the prediction and the explanation overlaid.
"""

from __future__ import annotations

from .card import model_card
from .case import CaseReport, build_case_report
from .render import write_html, write_pdf

__all__ = ["CaseReport", "build_case_report", "model_card", "write_html", "write_pdf"]
