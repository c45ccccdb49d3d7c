"""Rendering the portal's pages: autoescaped Jinja templates, Dutch labels, strict headers."""

from __future__ import annotations

from typing import Any

import jinja2
from fastapi.responses import HTMLResponse

from node_runtime.model.gemeente import Gemeente

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("node_runtime.facade.portal", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)

ACTIVITIES = {
    "receive": "ontvangen",
    "validate": "gevalideerd",
    "convert": "omgezet",
    "route": "gerouteerd",
    "deliver": "afgeleverd",
    "read": "gelezen",
    "acknowledge": "bevestigd",
    "reject": "afgewezen",
    "consult": "geraadpleegd",
    "purge": "verwijderd",
    "dead-letter": "onbestelbaar",
    "refuse": "geweigerd",
    "replay": "opnieuw aangeboden",
}
# No script at all, styles only from the portal itself, never framed, never cached.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class PortalRefusal(Exception):
    """A page the signed-in person may not or cannot see, answered as a Dutch HTML page."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(title)
        self.status, self.title, self.text = status, title, text


def render(
    template: str, gemeente: Gemeente | None, status: int = 200, **context: Any
) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        gemeente=gemeente, activities=ACTIVITIES, **context
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def refusal_page(refusal: PortalRefusal) -> HTMLResponse:
    return render(
        "refusal.html", None, status=refusal.status, title=refusal.title, text=refusal.text
    )
