"""Shadow validation: every live message also runs through the next release of its standard
(the SectorConnector's `shadow`), off the request path and without any effect on the answer,
the store or delivery; the differences are counted and shown without personal data.

``release``: the shadow release as a connector of its own; ``evaluation``: what one
connector revision makes of a message; ``differences``: how two
outcomes differ (paths and codes only); ``runner``: the background worker, its counters,
examples and metrics.
"""
