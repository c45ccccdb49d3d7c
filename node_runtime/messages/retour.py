"""Retour messages: the standard's acknowledgement, produced by the connector's stylesheet."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from node_runtime.messages.rules import RuleFailure

KP_NS = "urn:knooppunt:retour"
ACCEPTED_CODE = "0200"
NOT_ASSESSED_CODE = "0233"


class RetourError(RuntimeError):
    """The connector's retour stylesheet failed or produced an invalid retour."""


@dataclass(frozen=True)
class RetourBuilder:
    message: str
    stylesheet: etree.XSLT
    schema: etree.XMLSchema

    def build(
        self,
        original: etree._ElementTree,
        failures: Iterable[RuleFailure],
        *,
        retour_id: str,
        retour_date: str,
    ) -> bytes:
        failures = list(failures)
        # The codes are added to a copy; without codes the stylesheet reads the original.
        # Note: a stylesheet with xsl:strip-space (the iWmo retours have one) makes libxslt
        # remove the whitespace-only text nodes of the document it reads, so the original
        # loses those: read from the message what must keep them before the retour is built.
        doc = copy.deepcopy(original) if failures else original
        for failure in failures:
            target = doc.getroot()
            for step in failure.index_path:
                target = target[step]
            existing = {c.text for c in target if c.tag == f"{{{KP_NS}}}RetourCode"}
            if failure.retourcode not in existing:
                code = etree.SubElement(target, f"{{{KP_NS}}}RetourCode")
                code.text = failure.retourcode
        default = NOT_ASSESSED_CODE if failures else ACCEPTED_CODE
        try:
            result = self.stylesheet(
                doc,
                **{
                    "retour-id": etree.XSLT.strparam(retour_id),
                    "retour-date": etree.XSLT.strparam(retour_date),
                    "default-code": etree.XSLT.strparam(default),
                },
            )
        except etree.XSLTApplyError as exc:
            raise RetourError(f"{self.message} stylesheet failed: {exc}") from exc
        if result.getroot() is None:
            raise RetourError(f"{self.message} stylesheet produced nothing")
        if not self.schema.validate(result):
            errors = "; ".join(str(e.message) for e in list(self.schema.error_log)[:3])
            raise RetourError(f"{self.message} produced by the connector is invalid: {errors}")
        out: bytes = etree.tostring(result, xml_declaration=True, encoding="UTF-8")
        return out
