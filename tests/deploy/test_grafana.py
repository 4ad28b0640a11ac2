"""deploy/grafana/gateway.json: valid JSON, and every metric it queries exists in /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.deploy.scrape import scrape

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "gateway.json"


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_dashboard_is_valid_json_with_queries() -> None:
    """The file parses, has a uid and title, and every panel queries something."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert all(panel["targets"] for panel in dashboard["panels"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


async def test_every_queried_metric_exists(client, db) -> None:
    """Each gateway_* series a panel queries is in a real scrape of the app's /metrics, and
    the dashboard covers every metric family the app exports."""
    real = await scrape(client, db)
    queried = {m for expr in _expressions() for m in re.findall(r"\b(gateway_[a-z0-9_]+)", expr)}
    assert queried, "no metric queried"
    assert queried <= set(real), sorted(queried - set(real))
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in real}
    covered = {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in queried}
    gateway_families = {f for f in families if f.startswith("gateway_")}
    assert gateway_families - covered == set()
