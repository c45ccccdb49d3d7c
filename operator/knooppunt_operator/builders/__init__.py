"""Pure builders: a resource (and facts read beforehand) in, the objects that should exist out.

Nothing here talks to the API server or imports kopf; every object already carries its labels
and owner references, so the handlers only chain builders and :func:`knooppunt_operator.apply`.
"""
