"""Who is signed in to the portal, and which forms it accepts.

The signed-in gemeente is the one whose client certificate the façade verified in the TLS
handshake, mapped exactly as for the API (``facade.deps.get_gemeente``: OIN, issuer policy);
there is no second login, no session and no gemeentecode in a URL.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from node_runtime.facade.assembly import Facade
from node_runtime.facade.deps import get_facade, get_gemeente
from node_runtime.facade.portal.rendering import PortalRefusal
from node_runtime.model.gemeente import Gemeente
from node_runtime.web.problems import Problem

REFUSALS = {
    401: (
        "Aanmelden met een certificaat",
        "Dit portaal is alleen bereikbaar met het PKIoverheid-certificaat van uw gemeente.",
    ),
    403: ("Geen toegang", "Dit certificaat hoort niet bij een aangesloten gemeente."),
}


async def signed_in(request: Request) -> Gemeente:
    """The gemeente of the verified client certificate; nobody else gets in."""
    facade = await get_facade(request)
    try:
        return await get_gemeente(request, facade)
    except Problem as problem:
        title, text = REFUSALS.get(problem.status, REFUSALS[403])
        raise PortalRefusal(problem.status, title, text) from problem


SignedIn = Annotated[Gemeente, Depends(signed_in)]
FacadeOf = Annotated[Facade, Depends(get_facade)]


def same_origin(request: Request) -> None:
    """Forms are posted from the portal itself: the browser presents the certificate on any
    request, so a forged cross-site POST must be refused (OWASP, for cookie-less sites)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site in ("same-origin", "none"):
        return
    if site is None and origin and urlsplit(origin).netloc == request.headers.get("host"):
        return
    raise PortalRefusal(
        403,
        "Formulier niet aanvaard",
        "Het formulier kwam niet van dit portaal. Open het portaal opnieuw.",
    )


SameOrigin = Depends(same_origin)


def trace(request: Request) -> dict[str, str]:
    value = request.headers.get("traceparent")
    return {"traceparent": value} if value else {}
