"""Lineage and tracing: from ERP documents back to source events, and by correlation ID."""
