"""Numeric formats and arithmetic."""
