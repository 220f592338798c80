"""The built-in reference CRM (a stand-in for a real CRM, not a product)."""

from system_apis.crm.reference.crm import ReferenceCrm

__all__ = ["ReferenceCrm"]
