"""Figures a person wants to look at (matplotlib, Agg backend; no display needed)."""
