"""A real scrape of the app's /metrics, as the names and label names a query can use."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.tokens.directory import add_mapping
from tests.helpers import auth

V1 = "/api/v1/dashboards/iframe-token"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


async def scrape(client: Any, db: Any) -> dict[str, set[str]]:
    """Series name -> label names, after a 200, a 403, a 401 and a 405 on the token path."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    assert (await client.post(V1, json=body, headers=auth())).status == 200
    assert (
        await client.post(V1, json={**body, "tenant_id": "org-9"}, headers=auth())
    ).status == 403
    assert (await client.post(V1, json=body, headers={"Authorization": "Bearer x"})).status == 401
    assert (await client.get(V1)).status == 405
    resp = await client.get("/metrics")
    assert resp.status == 200
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series
