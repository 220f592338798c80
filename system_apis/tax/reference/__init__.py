"""The built-in tax engine (a stand-in for a real one): rate rules and a quote log."""

from system_apis.tax.reference.engine import ReferenceTax

__all__ = ["ReferenceTax"]
