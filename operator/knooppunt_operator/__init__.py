"""Knooppunt operator: reconciles Knooppunt, SectorConnector and Gemeente resources.

Import name ``knooppunt_operator`` (the folder ``operator/`` is not a package, so nothing here
shadows Python's own :mod:`operator`). Run with ``kopf run -m knooppunt_operator.main -A``.

Layers (imports only point downwards)::

    main            kopf decorators and start-up settings only
    handlers        thin reconcilers chaining the steps
    apply, kube     the one apply primitive, the HTTP client for the API server
    builders        pure functions: resource in, desired objects out
    status, certificates, webhook, crdgen, rbac   pure helpers
    node_runtime.model                            the typed resource model
"""

FIELD_MANAGER = "knooppunt-operator"
"""Server-side apply field manager; also the Events' reporting component."""
