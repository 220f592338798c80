"""Process APIs: usage ingest, billing runs, ERP posting and exceptions, orchestrated
across the system ports."""
