"""Prints how to try the running gateway (shown by ``make run`` before serving)."""

from canonical.time import utcnow

period = utcnow().strftime("%Y-%m")
print(f"""
Meterline is starting on http://127.0.0.1:8000 (SQLite, reference systems, demo data).
Try it from another terminal:

  # send usage (a resend of the same (source, id) is reported as a duplicate)
  curl -s -X POST http://127.0.0.1:8000/process/usage/v1/events \\
       -H 'content-type: application/json' \\
       -d '[{{"id":"try-1","source":"cli","event_type":"api.request","customer_id":"cus_acme"}}]'

  # bill this month: rate, tax, invoice and post to the reference ERP
  curl -s -X POST http://127.0.0.1:8000/process/billing/v1/runs \\
       -H 'content-type: application/json' -H 'Idempotency-Key: try-run-1' \\
       -d '{{"period":"{period}"}}'

  # the customer's invoices as the portal shows them
  curl -s http://127.0.0.1:8000/experience/portal/v1/customers/cus_acme/invoices

  # the ERP documents and the OpenAPI schema
  curl -s http://127.0.0.1:8000/system/erp/v1/documents
  open http://127.0.0.1:8000/schema
""")
