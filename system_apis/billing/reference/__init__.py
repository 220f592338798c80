"""The built-in billing engine (a stand-in for a real one): meters, price plans, rating."""

from system_apis.billing.reference.engine import ReferenceBilling

__all__ = ["ReferenceBilling"]
