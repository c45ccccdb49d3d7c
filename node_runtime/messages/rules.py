"""Business rules declared by a connector, evaluated per context element."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lxml import etree

from node_runtime.model.bsn import elfproef
from node_runtime.model.connector import Rule


def xpath_text(result: object) -> str:
    """The string value of an XPath result (first node, string, number, boolean)."""
    if isinstance(result, list):
        if not result:
            return ""
        first = result[0]
        if isinstance(first, etree._Element):
            if not len(first):  # no children: its text is all its text (the common case)
                return (first.text or "").strip()
            return "".join(first.itertext()).strip()
        return str(first).strip()
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, float):
        return str(int(result)) if result.is_integer() else str(result)
    return str(result).strip()


def index_path(element: etree._Element) -> tuple[int, ...]:
    """Child positions from the root to element (locates it again in a deep copy)."""
    steps: list[int] = []
    node = element
    parent = node.getparent()
    while parent is not None:
        steps.append(parent.index(node))
        node, parent = parent, parent.getparent()
    return tuple(reversed(steps))


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    retourcode: str
    message: str
    element: etree._Element
    line: int | None
    path: str
    index_path: tuple[int, ...]


@dataclass(frozen=True)
class CompiledRule:
    spec: Rule
    context: etree.XPath
    value: etree.XPath | None
    test: etree.XPath | None


def compile_rule(rule: Rule, namespaces: dict[str, str]) -> CompiledRule:
    def xp(expr: str | None) -> etree.XPath | None:
        return etree.XPath(expr, namespaces=namespaces) if expr else None

    context = etree.XPath(rule.context, namespaces=namespaces)
    return CompiledRule(rule, context, xp(rule.value), xp(rule.test))


def evaluate(
    rules: Iterable[CompiledRule],
    root: etree._Element,
    *,
    is_tenant: Callable[[str], bool],
    is_participant: Callable[[str], bool],
) -> list[RuleFailure]:
    failures: list[RuleFailure] = []
    tree = root.getroottree()
    # Rules often share a context (the header, each client, each product): each distinct
    # context expression is evaluated once per message.
    selected: dict[str, list[etree._Element]] = {}
    for rule in rules:
        contexts = selected.get(rule.spec.context)
        if contexts is None:
            found = rule.context(root)
            contexts = (
                [c for c in found if isinstance(c, etree._Element)]
                if isinstance(found, list)
                else []
            )
            selected[rule.spec.context] = contexts
        for ctx in contexts:
            if rule.spec.kind == "xpath":
                assert rule.test is not None
                ok = bool(rule.test(ctx))
            else:
                assert rule.value is not None
                value = xpath_text(rule.value(ctx))
                if rule.spec.kind == "elfproef":
                    ok = elfproef(value)
                elif rule.spec.kind == "tenant":
                    ok = bool(value) and is_tenant(value)
                else:
                    ok = bool(value) and is_participant(value)
            if not ok:
                failures.append(
                    RuleFailure(
                        rule=rule.spec.name,
                        retourcode=rule.spec.retourcode,
                        message=rule.spec.message,
                        element=ctx,
                        line=ctx.sourceline,
                        path=tree.getpath(ctx),
                        index_path=index_path(ctx),
                    )
                )
    return failures
