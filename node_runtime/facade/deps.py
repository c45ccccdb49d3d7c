"""Dependencies of the façade's routes: the façade object and the calling gemeente."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from node_runtime.facade.assembly import Facade
from node_runtime.model.gemeente import Gemeente
from node_runtime.security.callers import claimed_serial
from node_runtime.web.problems import Problem


async def get_facade(request: Request) -> Facade:
    facade: Facade = request.app.state.facade
    return facade


FacadeDep = Annotated[Facade, Depends(get_facade)]


async def get_gemeente(request: Request, facade: FacadeDep) -> Gemeente:
    """The calling gemeente, from its verified client certificate (never from a header).

    Async on purpose: cheap, and it saves a thread-pool hop on every request."""
    cert = facade.identity(request)
    if cert is None:
        raise Problem(
            401,
            "no-client-certificate",
            "Client certificate required",
            "Authenticate with your gemeente's client certificate.",
        )
    serial = claimed_serial(cert)
    if cert.serial_number and serial is None:
        raise Problem(
            403,
            "issuer-not-allowed",
            "Issuing CA may not speak for this organisation",
            f"The certificate carries serialNumber {cert.serial_number}, but its "
            "issuing CA is not allowed to speak for that organisation.",
        )
    gemeente = facade.holder.current.gemeenten_by_oin.get(serial or "")
    if gemeente is None:
        raise Problem(
            403,
            "not-a-gemeente",
            "Not a gemeente known to the façade",
            f"The certificate (serialNumber {cert.serial_number or '-'}) is valid but "
            "belongs to no gemeente; the façade serves gemeenten only.",
        )
    request.state.gemeente = gemeente
    return gemeente


GemeenteDep = Annotated[Gemeente, Depends(get_gemeente)]


def own(gemeente: Gemeente, code: str, what: str) -> None:
    if gemeente.spec.gemeentecode != code:
        raise Problem(
            403,
            f"not-your-{what}",
            f"Not your {what.replace('-', ' ')}",
            f"{gemeente.spec.display_name} may use only its own {what.replace('-', ' ')}"
            f" (gemeentecode {gemeente.spec.gemeentecode}).",
        )


def trace_headers(request: Request) -> dict[str, str]:
    value = request.headers.get("traceparent")
    return {"traceparent": value} if value else {}
