"""What every error answer of the gateway and its System APIs is: an RFC 9457 problem."""

from __future__ import annotations

import json

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """``response`` is a ``status`` answer in ``application/problem+json`` (whose ``code``
    is ``code``, when given); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def not_found_shape(response, asked_id: str) -> dict:
    """A 404 with the asked id and the correlation id taken out: what must be identical
    whether the id is unknown or belongs to someone else."""
    body = assert_problem(response, 404)
    del body["correlation_id"]
    return json.loads(json.dumps(body).replace(asked_id, "<id>"))
