"""System APIs: one port per wrapped system (ERP, CRM, tax, billing), a built-in
reference implementation of each, an HTTP adapter for a remote one, and routes."""
