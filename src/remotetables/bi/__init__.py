"""BI servers: what their integrations share (:mod:`.guards`, free of their imports, so it is
tested without them) and the engine specs built on it (:mod:`.superset`, imported only by
Superset through its ``superset.db_engine_specs`` entry point)."""

from __future__ import annotations

from remotetables.bi.guards import impersonated, oauth2_provider, refuse_attach

__all__ = ["impersonated", "oauth2_provider", "refuse_attach"]
