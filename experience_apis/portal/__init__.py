"""Experience API for customer portals: summary, usage, estimate, invoices."""
