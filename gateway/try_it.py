"""Prints how to try the running gateway (shown by ``make run`` before serving), with
the demo operator's credentials written by ``meterline seed``."""

import json
from pathlib import Path

from canonical.time import utcnow
from gateway.settings import Settings

period = utcnow().strftime("%Y-%m")
credentials = {
    c["client_id"]: c["client_secret"]
    for c in json.loads(Path("var/demo-clients.json").read_text())
}
settings = Settings.from_env()
base = f"http://{settings.host}:{settings.port}"
print(f"""
Meterline is starting on {base} (SQLite, reference systems, demo data).
Every API needs an OAuth 2.0 access token. Try it from another terminal:

  # a token for the demo operator (client credentials grant)
  TOKEN=$(curl -s -u demo-operator:{credentials["demo-operator"]} \\
       -d grant_type=client_credentials {base}/oauth/token \\
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

  # send usage (a resend of the same (source, id) is reported as a duplicate)
  curl -s -X POST {base}/process/usage/v1/events -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' \\
       -d '[{{"id":"try-1","source":"cli","event_type":"api.request","customer_id":"cus_acme"}}]'

  # bill this month: rate, tax, invoice and post to the reference ERP; the run goes on
  # in the background (202): follow it at the URL in Location, or list the runs
  curl -s -X POST {base}/process/billing/v1/runs -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -H 'Idempotency-Key: try-run-1' \\
       -d '{{"period":"{period}"}}'
  curl -s -H "Authorization: Bearer $TOKEN" {base}/process/billing/v1/runs

  # trace everything one request caused, from its events to the ERP document
  curl -s -H "Authorization: Bearer $TOKEN" \\
       {base}/process/lineage/v1/correlations/<the X-Correlation-ID of a response>

  # the customer's invoices as the portal shows them
  curl -s -H "Authorization: Bearer $TOKEN" \\
       {base}/experience/portal/v1/customers/cus_acme/invoices

  # a partner sees its own customers only (cus_bistro is Northwind's, cus_acme is not)
  PTOKEN=$(curl -s -u demo-partner-northwind:{credentials["demo-partner-northwind"]} \\
       -d grant_type=client_credentials {base}/oauth/token \\
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $PTOKEN" \\
       {base}/experience/portal/v1/customers/cus_bistro/invoices
  curl -s -H "Authorization: Bearer $PTOKEN" \\
       {base}/experience/portal/v1/customers/cus_acme/invoices

  # the ERP documents, the contracts and the interactive schema
  curl -s {base}/system/erp/v1/documents -H "Authorization: Bearer $TOKEN"
  curl -s {base}/openapi/
  open {base}/schema
""")
