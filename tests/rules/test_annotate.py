"""Which deployment an alert names: the statistical verdict, and the series a deployment introduced."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from otel_llm_collector.annotate import INTRODUCED, DeploymentAnnotator, introducing_deployment
from otel_llm_collector.app import App
from otel_llm_collector.config import load_settings
from otel_llm_collector.correlation import Deployment, DeploymentTracker
from otel_llm_collector.history import MetricHistory
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.rules import parse_rules

MINUTE_NS = 60 * 1_000_000_000
T0 = 1_800_000_000 * 1_000_000_000
V2 = SeriesKey("bot", "support", "answer", "2.0.0", "gpt-4o-mini")


def _auto(time_ns: int, **components: str) -> Deployment:
    return Deployment(f"auto:{components}", time_ns, {"service": "bot", **components}, automatic=True)


def test_the_deployment_that_brought_the_version_in_is_named() -> None:
    older = _auto(T0, prompt_name="answer", prompt_version="1.0.0")
    newer = _auto(T0 + 30 * MINUTE_NS, prompt_name="answer", prompt_version="2.0.0")
    found = introducing_deployment([older, newer], V2, T0 + 32 * MINUTE_NS)
    assert found is newer


def test_a_posted_deploy_shortly_before_the_telemetry_saw_it_is_preferred() -> None:
    posted = Deployment(
        "prompt answer 2.0.0 by ci", T0, {"prompt_name": "answer", "prompt_version": "2.0.0"}, author="ci"
    )
    seen = _auto(T0 + MINUTE_NS // 2, prompt_name="answer", prompt_version="2.0.0")
    assert introducing_deployment([posted, seen], V2, T0 + 2 * MINUTE_NS) is posted
    # A posted deploy of the same version long before (then rolled back, redeployed) is not preferred.
    stale = Deployment("old", T0 - 60 * MINUTE_NS, {"prompt_version": "2.0.0"})
    assert introducing_deployment([stale, seen], V2, T0 + 2 * MINUTE_NS) is seen


def test_no_deployment_when_the_version_predates_them_or_is_too_old() -> None:
    other = _auto(T0, prompt_name="answer", prompt_version="3.0.0")
    assert introducing_deployment([other], V2, T0 + MINUTE_NS) is None
    old = _auto(T0, prompt_name="answer", prompt_version="2.0.0")
    assert introducing_deployment([old], V2, T0 + 7 * 60 * MINUTE_NS) is None
    later = _auto(T0 + 5 * MINUTE_NS, prompt_name="answer", prompt_version="2.0.0")
    assert introducing_deployment([later], V2, T0) is None


def test_an_alert_on_a_new_version_names_its_deployment_before_any_history_exists() -> None:
    ruleset, errors = parse_rules(
        {"rules": [{"name": "faith", "condition": "eval_mean{faithfulness} < 0.4", "severity": "P0"}]}
    )
    assert ruleset is not None, errors
    [rule] = ruleset.rules
    tracker = DeploymentTracker()
    tracker.observe(V2._replace(prompt_version="1.0.0"), "1", T0)
    revealed = tracker.observe(V2, "1", T0 + MINUTE_NS)
    assert revealed is not None
    annotations = DeploymentAnnotator(tracker, MetricHistory()).annotate(rule, V2, T0 + 2 * MINUTE_NS)
    assert annotations["deployment"] == revealed.id
    assert annotations["deployment_confidence"] == INTRODUCED
    assert "introduced" in annotations["correlation"]
    # The old version's series was not introduced by it: no deployment named.
    old = DeploymentAnnotator(tracker, MetricHistory()).annotate(
        rule, V2._replace(prompt_version="1.0.0"), T0 + 2 * MINUTE_NS
    )
    assert old["deployment"] == ""


def _post(url: str, body: dict[str, object], token: str) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_a_registry_deploy_through_the_api_is_recorded_as_a_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_LLM_API_TOKEN", "t0ken")
    settings = load_settings(
        overrides={
            "otlp_grpc_endpoint": "127.0.0.1:0",
            "otlp_http_endpoint": "127.0.0.1:0",
            "http_endpoint": "127.0.0.1:0",
            "state_dir": tmp_path / "state",
        }
    )
    app = App(settings)
    app.start()
    try:
        base = f"http://{app.addresses()['http']}"
        for version in ("1.0.0", "2.0.0"):
            body = {"name": "answer", "version": version, "text": f"t {version}", "created_by": "dev"}
            assert _post(f"{base}/api/v1/prompts/register", body, "t0ken") == 201
        deploy = {"name": "answer", "version": "2.0.0", "by": "ci", "reason": "retrieval refactor"}
        assert _post(f"{base}/api/v1/prompts/deploy", deploy, "t0ken") == 200
        with urllib.request.urlopen(f"{base}/api/v1/deployments", timeout=10) as response:
            deployments = json.load(response)["deployments"]
    finally:
        app.stop(1.0)
    [posted] = deployments
    assert posted["id"] == "prompt answer 2.0.0 by ci: retrieval refactor"
    assert posted["components"] == {"prompt_name": "answer", "prompt_version": "2.0.0"}
    assert posted["author"] == "ci"
