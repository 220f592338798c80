"""Signing in to the finance page over HTTP the way its form does, and reading what the
page hands back: its cookies and the CSRF token of its forms."""

from __future__ import annotations

import re

import httpx

SESSION = "meterline_finance_session"
FORM_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(
    client: httpx.AsyncClient, client_id: str, secret: str, next_path: str = ""
) -> httpx.Response:
    """Fetches the sign-in form and posts it with its nonce; returns the answer (a 303
    carrying the session cookie when the credentials are good)."""
    nonce = FORM_NONCE.search((await client.get("/finance/sign-in")).text).group(1)
    form = {"client_id": client_id, "client_secret": secret, "nonce": nonce}
    if next_path:
        form["next"] = next_path
    return await client.post("/finance/sign-in", data=form)


def set_cookie(response: httpx.Response, name: str) -> str:
    """The ``Set-Cookie`` header of ``response`` that sets ``name``."""
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(name + "="))
