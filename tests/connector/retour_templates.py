"""Literal templates for the builtin retour stylesheets, generated from the schemas.

A retour copies every element of the message under the same local name (in the retour's
namespace, or the basisschema's). The stylesheets do that with one generic template per
namespace (``xsl:element name="wmo306:{local-name()}"``), and libxslt evaluates such a name
at run time for every element, compiling its XPath each time. One literal template per
element name the schemas declare does the same with literal result elements, about a quarter
cheaper; the generic templates stay for anything else. Names the hand-written templates
match are left to those.

    python -m tests.connector.retour_templates          # rewrite the generated blocks
    (tests/connector/test_retour_output.py checks that they are current)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lxml import etree

BUNDLE = Path(__file__).resolve().parents[2] / "node_runtime" / "connectors" / "iwmo-2.1"
XS = "{http://www.w3.org/2001/XMLSchema}"
XSL = "{http://www.w3.org/1999/XSL/Transform}"
# retour stylesheet -> the schema of the message it answers
STYLESHEETS = {
    "wmo302": "wmo301.xsd",
    "wmo306": "wmo305.xsd",
    "wmo308": "wmo307.xsd",
    "wmo316": "wmo315.xsd",
}
BEGIN = "  <!-- BEGIN generated literal templates"
END = "  <!-- END generated literal templates -->\n"


def _declared(schema: str) -> list[str]:
    tree = etree.parse(str(BUNDLE / schema))
    return sorted({e.get("name", "") for e in tree.iter(f"{XS}element")} - {""})


def _hand_written(text: str, prefix: str) -> set[str]:
    """Names matched by a hand-written template as a plain ``prefix:Name`` alternative."""
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + rest.split(END, 1)[1]
    names: set[str] = set()
    for template in etree.fromstring(text.encode()).iter(f"{XSL}template"):
        for alternative in (template.get("match") or "").split("|"):
            found = re.fullmatch(rf"\s*{prefix}:([\w.-]+)\s*", alternative)
            if found:
                names.add(found.group(1))
    return names


def block(name: str) -> str:
    """The generated templates of one retour stylesheet (WMO302, 306, 308, 316)."""
    text = (BUNDLE / "retour" / f"{name}.xsl").read_text()
    lines = [
        f"{BEGIN} (tests/connector/retour_templates.py; do not edit):",
        "       the same copies as the generic src:* and iwmo:* templates, as literal result",
        "       elements, which libxslt instantiates without evaluating a name per element. -->",
    ]
    skip = _hand_written(text, "src")
    for element in _declared(STYLESHEETS[name]):
        if element not in skip:
            lines.append(
                f'  <xsl:template match="src:{element}"><{name}:{element}>'
                f'<xsl:apply-templates select="node()"/></{name}:{element}></xsl:template>'
            )
    skip = _hand_written(text, "iwmo")
    for element in _declared("basisschema.xsd"):
        if element not in skip:
            lines.append(
                f'  <xsl:template match="iwmo:{element}"><iwmo:{element}>'
                f'<xsl:apply-templates select="node()"/></iwmo:{element}></xsl:template>'
            )
    return "\n".join(lines) + "\n" + END


def with_block(name: str) -> str:
    """The stylesheet's text with its generated block replaced (or added at the end)."""
    text = (BUNDLE / "retour" / f"{name}.xsl").read_text()
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = text.split("</xsl:stylesheet>", 1)
        head, tail = head.rstrip("\n") + "\n\n", "\n</xsl:stylesheet>" + tail
    return head + block(name) + tail


if __name__ == "__main__":
    for stylesheet in STYLESHEETS:
        path = BUNDLE / "retour" / f"{stylesheet}.xsl"
        path.write_text(with_block(stylesheet))
        print(f"wrote {path}", file=sys.stderr)
