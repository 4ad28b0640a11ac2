"""deploy/prometheus/alerts.yml: valid rules, unit-tested with `promtool test rules`, over series
whose names and label names are those of a real /metrics scrape."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.scrape import scrape

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
# Series the gateway does not export: Prometheus' own `up` and the blackbox probe of /readyz.
EXTERNAL = {"up", "probe_success"}
# Labels Prometheus adds at scrape time.
TARGET_LABELS = {"instance", "job"}
_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: .ci/run installs Debian's prometheus"
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_are_valid() -> None:
    """`promtool check rules` accepts alerts.yml."""
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass() -> None:
    """`promtool test rules alerts_test.yml`: each alert fires when it should and not before."""
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_and_has_a_runbook() -> None:
    """Every alert in alerts.yml is exercised by alerts_test.yml and links a README runbook
    section that exists."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert {rule["alert"] for rule in rules} == tested
    readme = (PROMETHEUS.parents[1] / "README.md").read_text()
    anchors = {"#" + m.lower() for m in re.findall(r"^#### (Gateway\w+)", readme, re.M)}
    for rule in rules:
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("README.md#")
        assert runbook.removeprefix("README.md") in anchors, runbook


async def test_test_series_are_shaped_like_a_real_scrape(client, db) -> None:
    """Every gateway series in alerts_test.yml and every metric alerts.yml queries exists in a
    real /metrics scrape, with label names the scrape uses (plus instance and job)."""
    real = await scrape(client, db)
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    for test in tests:
        for item in test["input_series"]:
            match = _SERIES.match(item["series"])
            assert match is not None, item["series"]
            name = match.group(1)
            if name in EXTERNAL:
                continue
            assert name in real, name
            labels = set(re.findall(r"([a-zA-Z_]+)=", match.group(2))) - TARGET_LABELS
            assert labels <= real[name] or not real[name], (name, labels, real[name])
    queried = set(re.findall(r"\b(gateway_[a-z0-9_]+)", (PROMETHEUS / "alerts.yml").read_text()))
    assert queried <= set(real), queried - set(real)
