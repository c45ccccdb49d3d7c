"""Thin reconcilers: each chains builders, the apply primitive and status for one resource kind.

They take a :class:`~knooppunt_operator.handlers.context.Context` and a (namespace, name) and
read the current object themselves, so kopf's decorators (in ``main``), other handlers and
tests can all call them.
"""
