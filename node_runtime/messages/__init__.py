"""A sector connector's messages: compiled schemas, safe parsing, business rules, conversion,
purpose filters (doelbinding), retour messages, bundles."""
