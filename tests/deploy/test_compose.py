"""deploy/compose.yaml: valid under the vendored Compose Specification schema, with the
services, one-shot migration and health checks the README describes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """The file validates against compose-spec.json (no Docker engine runs here)."""
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=str)
    assert errors == [], [e.message for e in errors]


def test_schema_rejects_a_broken_file() -> None:
    """The schema is really applied: a misspelt service key fails validation."""
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    broken = _compose()
    broken["services"]["gateway"]["healthchek"] = broken["services"]["gateway"].pop("healthcheck")
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_services_migrate_once_and_wait_for_health() -> None:
    """PostgreSQL and Redis have health checks; migrate waits for PostgreSQL and runs once; the
    gateway waits for migrate to succeed and for Redis, and checks its own /readyz."""
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "gateway"} <= set(services)
    assert services["postgres"]["healthcheck"]
    assert services["redis"]["healthcheck"]
    migrate, gateway = services["migrate"], services["gateway"]
    assert migrate["command"] == ["gateway", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["environment"]["GATEWAY_DATABASE_URL"].startswith("postgresql://")
