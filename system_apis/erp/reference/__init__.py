"""The built-in reference ERP (a stand-in for a real ERP, not a product)."""

from system_apis.erp.reference.erp import ReferenceErp

__all__ = ["ReferenceErp"]
