"""The page's stylesheet and script, inlined in every page and allowed by hash in its
Content-Security-Policy: no other script or style can run, and no asset route (and no
CDN) is needed."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from markupsafe import Markup

__all__ = ["CSP", "SCRIPT", "STYLE", "TEMPLATES"]

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"

STYLE = Markup((HERE / "static" / "finance.css").read_text(encoding="utf-8"))
SCRIPT = Markup((HERE / "static" / "finance.js").read_text(encoding="utf-8"))


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Pages talk only to their own origin: forms and fetch() post back to /finance.
CSP = (
    "default-src 'none'; "
    f"style-src {_hash(STYLE)}; "
    f"script-src {_hash(SCRIPT)}; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
