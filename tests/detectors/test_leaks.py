"""Leak scanning: the scanner's precision, the `leak` evaluator, and a P0 alert that never carries the text.

Secrets are assembled from pieces so that secret scanners do not flag this file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from typing import Any

import openai
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.conditions import WindowMetrics, parse_condition
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_logs, decode_traces
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.findings import FindingsAnnotator
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.rules import RuleSet, parse_rules
from otel_llm_collector.testing import SECOND_NS, T0_NS
from otel_llm_collector.windows import MINUTE_NS, WindowEngine

import otel_llm
from otel_llm import evaluation_hook
from otel_llm.evaluators import EvaluationInput, groundedness
from otel_llm.leaks import HASH_KEY_ENV, KINDS, Finding, LeakScanner, leak, scan
from otel_llm.testing.llm_server import LLMServer, Reply, ScriptedResponder
from tests.conftest import Telemetry, make_telemetry

OPENAI_KEY = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zB9cD1fG3hJ5kL7"
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa-_xy"
AWS_KEY = "AKIA" + "Z7QX4RB2MNPW8KLD"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SLACK_TOKEN = "xoxb-" + "302914857163-4829175023861-Hq7ZrT2mKx9PwL4vNc8BsY3d"
SLACK_WEBHOOK = "https://hooks.slack.com/services/" + "T04XK9Q2M/B05RZ7W3N/Pq8sX2mVz7LwK4tR9yN3bJ6h"
STRIPE_KEY = "sk_" + "live_" + "51Hq7ZrT2mKx9PwL4vNc8BsY3d"
GOOGLE_KEY = "AIza" + "SyB7q2X9m4KpL8w3Zr6Tn1Vc5Hd0Jf2Qs-E"
JWT = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
PEM = (
    "-----BEGIN RSA "
    + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEAq7Zr2mKx9PwL4vNc8Bs\nY3dHq7ZrT2mKx9PwL4v==\n"
    + ("-----END RSA " + "PRIVATE KEY-----")
)
GITLAB_TOKEN = "glpat-" + "xY3zA9bC7dE5fG1hJ2kL"
VISA = "4111 1111 1111 1111"

POSITIVES = [
    # (text, kind, the matched substring)
    (f"Your key is {OPENAI_KEY}.", "openai_key", OPENAI_KEY),
    (f"Use {ANTHROPIC_KEY} for that.", "anthropic_key", ANTHROPIC_KEY),
    (f"aws_access_key_id = {AWS_KEY}", "aws_access_key", AWS_KEY),
    (f"token: {GITHUB_TOKEN}", "github_token", GITHUB_TOKEN),
    (f"The bot token is {SLACK_TOKEN}", "slack_token", SLACK_TOKEN),
    (f"Post to {SLACK_WEBHOOK} when done.", "slack_webhook", SLACK_WEBHOOK),
    (f"STRIPE_SECRET={STRIPE_KEY}", "stripe_key", STRIPE_KEY),
    (f"maps key {GOOGLE_KEY} works", "google_api_key", GOOGLE_KEY),
    (f"session: {JWT}", "jwt", JWT),
    (f"Here it is:\n{PEM}\nKeep it safe.", "private_key", PEM),
    (f"GitLab: {GITLAB_TOKEN}", "generic_secret", GITLAB_TOKEN),
    ("Write to jane.doe+billing@example.co.uk today.", "email", "jane.doe+billing@example.co.uk"),
    ("Call +1 (415) 555-2671 now.", "phone", "+1 (415) 555-2671"),
    ("London office: +44 20 7946 0958.", "phone", "+44 20 7946 0958"),
    ("US desk (555) 123-4567", "phone", "(555) 123-4567"),
    (f"Card {VISA}, expiry 12/29.", "card", VISA),
    ("Amex 3782 822463 10005 on file.", "card", "3782 822463 10005"),
    ("Mastercard 5555555555554444.", "card", "5555555555554444"),
]


@pytest.mark.parametrize(("text", "kind", "matched"), POSITIVES)
def test_scanner_finds_each_kind_with_its_position(text: str, kind: str, matched: str) -> None:
    (finding,) = scan(text)
    assert finding.kind == kind
    assert text[finding.start : finding.end] == matched
    assert finding.digest == "sha256:" + hashlib.sha256(matched.encode()).hexdigest()[:16]


NEGATIVES = [
    "Card 4111 1111 1111 1112 was declined.",  # fails the Luhn check
    "Order 4242424242424241 shipped.",  # fails the Luhn check
    "Reference 1234567812345670 is not a card: no card prefix.",
    "Tracking 1700000000000 and id 1234567890123456789.",
    "In 2024 we sold 15000 units, up from 9800 in 2023; released 2024-05-01, version 3.11.4.",
    "Server at 192.168.100.200 port 8443, ISBN 978-3-16-148410-0, SSN-like 123-45-6789.",
    "Price $1,299.00 for 12 months, +15% growth, 3+4 = 7.",
    "Use sk-learn-is-a-machine-learning-library-for-python instead.",
    "Set key_1234567890_for_prod and api_key_for_the_production_environment in the config.",
    "The secret_santa_2024_gift_exchange_list and monkey_Business2024_AbcDef12345678 are fine.",
    "Repeat token_abc123abc123abc123abc123 is a pattern, not a secret.",
    "The api-gateway-service-v2-deployment-2024 is up.",
    "A Slack channel called xoxb-general is no token.",
    "Stripe test mode starts with sk_" + "live_ and a key, as the docs say.",
    "The header reads -----BEGIN PUBLIC KEY----- and is public.",
    "Email us at support (at) example dot com, or user@localhost.",
    "He was the bearer of bad news.",
    "A JWT starts with eyJ and has three parts.",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_scanner_leaves_look_alikes_alone(text: str) -> None:
    assert scan(text) == []


def test_findings_come_back_in_text_order_and_never_hold_the_text() -> None:
    text = f"mail a@b.io, then {SLACK_TOKEN}, phone +1 415 555 2671, card {VISA}."
    findings = scan(text)
    assert [f.kind for f in findings] == ["email", "slack_token", "phone", "card"]
    for secret in ("a@b.io", SLACK_TOKEN, "+1 415 555 2671", VISA):
        assert secret not in repr(findings)
    assert all(isinstance(f, Finding) and len(f.digest) == len("sha256:") + 16 for f in findings)


def test_a_hash_key_turns_digests_into_hmacs() -> None:
    (finding,) = scan(f"key {OPENAI_KEY}", hash_key=b"pepper")
    expected = hmac.new(b"pepper", OPENAI_KEY.encode(), hashlib.sha256).hexdigest()[:16]
    assert finding.digest == f"hmac-sha256:{expected}"


def test_kinds_cover_redaction_and_the_extra_credentials() -> None:
    assert KINDS[:8] == (
        "anthropic_key",
        "openai_key",
        "aws_access_key",
        "github_token",
        "bearer_token",
        "card",
        "email",
        "phone",
    )
    assert set(KINDS[8:]) == {
        "slack_token",
        "slack_webhook",
        "stripe_key",
        "google_api_key",
        "jwt",
        "private_key",
        "generic_secret",
    }


# --- the evaluator ----------------------------------------------------------------------------------------


def _answer(text: str, *, user: str = "What is my account status?", **kwargs: Any) -> EvaluationInput:
    return EvaluationInput(request_messages=[{"role": "user", "content": user}], response_text=text, **kwargs)


def test_evaluator_fails_with_kinds_positions_and_digests_only() -> None:
    text = f"Sure. The admin key is {OPENAI_KEY} and ops mail is ops@corp.example."
    outcome = leak(_answer(text))
    assert outcome is not None
    assert (outcome.name, outcome.score, outcome.label) == ("leak", 1.0, "fail")
    start = text.index(OPENAI_KEY)
    digest = hashlib.sha256(OPENAI_KEY.encode()).hexdigest()[:16]
    email_start = text.index("ops@corp.example")
    assert outcome.explanation == (
        f"2 leaks: openai_key {start}-{start + len(OPENAI_KEY)} sha256:{digest}, "
        f"email {email_start}-{email_start + 16} "
        f"sha256:{hashlib.sha256(b'ops@corp.example').hexdigest()[:16]}"
    )
    assert OPENAI_KEY not in repr(outcome)
    assert "ops@corp.example" not in repr(outcome)


def test_evaluator_passes_clean_answers_and_skips_what_it_cannot_judge() -> None:
    outcome = leak(_answer("Your plan renews on 2026-03-01 for $39."))
    assert outcome is not None
    assert (outcome.score, outcome.label) == (0.0, "pass")
    assert leak(_answer("")) is None
    assert leak(_answer(f"key {OPENAI_KEY}", error_type="500")) is None


def test_the_users_own_data_echoed_back_is_not_a_leak() -> None:
    data = _answer("I updated your email to jane@example.com.", user="Change my email to jane@example.com")
    outcome = leak(data)
    assert outcome is not None
    assert outcome.label == "pass"
    assert (
        outcome.explanation == "no secrets or personal data found (1 echoed from the user's messages ignored)"
    )
    # Not excused: the same address from the system prompt or the context, or another address.
    system = EvaluationInput(
        request_messages=[
            {"role": "system", "content": "Escalate to jane@example.com"},
            {"role": "user", "content": "hi"},
        ],
        response_text="Write to jane@example.com.",
    )
    assert (leak(system) or pytest.fail("judged")).label == "fail"
    assert (LeakScanner(ignore_user_echo=False)(data) or pytest.fail("judged")).label == "fail"


def test_explanation_lists_ten_findings_and_counts_the_rest() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(13))
    outcome = leak(_answer(text))
    assert outcome is not None
    assert outcome.explanation is not None
    assert outcome.explanation.startswith("13 leaks: email 0-17 ")
    assert outcome.explanation.count("email ") == 10
    assert outcome.explanation.endswith(", +3 more")


def test_hash_key_comes_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _answer(f"key {OPENAI_KEY}")
    monkeypatch.setenv(HASH_KEY_ENV, "from-env")
    from_env = hmac.new(b"from-env", OPENAI_KEY.encode(), hashlib.sha256).hexdigest()[:16]
    outcome = leak(data)
    assert outcome is not None
    assert f"hmac-sha256:{from_env}" in str(outcome.explanation)
    from_arg = hmac.new(b"arg", OPENAI_KEY.encode(), hashlib.sha256).hexdigest()[:16]
    outcome = LeakScanner(hash_key=b"arg")(data)
    assert outcome is not None
    assert f"hmac-sha256:{from_arg}" in str(outcome.explanation)


def test_long_answers_are_scanned_up_to_the_limit() -> None:
    text = "a" * 50 + f" {OPENAI_KEY}"
    outcome = LeakScanner(max_chars=40)(_answer(text))
    assert outcome is not None
    assert outcome.label == "pass"
    assert outcome.explanation is not None
    assert "only the first 40 characters scanned" in outcome.explanation


# --- sampling: every call is scanned ----------------------------------------------------------------------


def _ask(server: LLMServer, content: str = "What is the admin key?") -> None:
    with otel_llm.llm_context(feature="support", retrieved_context=["The admin console is at /admin."]):
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
            )


def _results(telemetry: Telemetry) -> list[dict[str, Any]]:
    return [dict(r.log_record.attributes or {}) for r in telemetry.logs.get_finished_logs()]


def test_leak_scanning_is_never_sampled_away(telemetry: Telemetry) -> None:
    script = ScriptedResponder([Reply(text=f"It is {OPENAI_KEY}.") for _ in range(3)])
    worker = otel_llm.enable_evaluation([groundedness, leak], sample_rate=0.0)
    try:
        with LLMServer(script) as server:
            for _ in range(3):
                _ask(server)
    finally:
        otel_llm.disable_evaluation()
    assert worker.sampled_out == 3  # the sampled worker: groundedness judged nothing
    names = [r["gen_ai.evaluation.name"] for r in _results(telemetry)]
    assert names == ["leak", "leak", "leak"]


def test_env_registers_the_leak_evaluator_unsampled(
    monkeypatch: pytest.MonkeyPatch, telemetry: Telemetry
) -> None:
    monkeypatch.setenv("OTEL_LLM_EVALUATORS", "refusal,leak")
    monkeypatch.setenv("OTEL_LLM_EVALUATION_SAMPLE_RATE", "0")
    assert evaluation_hook.enable_from_env(os.environ) is not None
    script = ScriptedResponder([Reply(text="Nothing secret here."), Reply(text="Write to a@corp.example.")])
    try:
        with LLMServer(script) as server:
            _ask(server)
            _ask(server)
    finally:
        otel_llm.disable_evaluation()
    results = _results(telemetry)
    assert [(r["gen_ai.evaluation.name"], r["gen_ai.evaluation.score.label"]) for r in results] == [
        ("leak", "pass"),
        ("leak", "fail"),
    ]
    assert {r["otel_llm.evaluation.source"] for r in results} == {"local"}


# --- the collector: a P0 on one leak, with hashes and positions, never the text ---------------------------

LEAK_RULE_YAML = """
rules:
  - name: leak-p0
    condition: eval_fail_count{leak} > 0
    window: 5m
    for: 0
    keep_firing_for: 10m
    severity: P0
    group: leak
    actions: [alert, flag_for_review]
    runbook_url: docs/runbooks/leak.md
    summary: "Secret or personal data in {{ $value }} answer(s) of {{ $labels.feature }}"
    description: >-
      The leak scanner found secrets or personal data in {{ $value }} answer(s) of
      {{ $labels.service }}/{{ $labels.feature }} (prompt {{ $labels.prompt_name }}
      {{ $labels.prompt_version }}, model {{ $labels.model }}) within 5 minutes. The findings annotation
      names each call with the kinds, positions and digests of what was found; the text is never sent.
"""


def _leak_rules() -> RuleSet:
    ruleset, errors = parse_rules(yaml.safe_load(LEAK_RULE_YAML), source="leak rule")
    assert ruleset is not None, errors
    return ruleset


def _pipeline(events: list[AlertEvent]) -> tuple[Pipeline, FindingsAnnotator]:
    engine = WindowEngine()
    evaluator = build_evaluator(_leak_rules())
    findings = FindingsAnnotator(engine.join)
    evaluator.annotator = findings
    return Pipeline(engine, evaluator, on_events=events.extend), findings


def _apply(pipeline: Pipeline, findings: FindingsAnnotator, result: DecodeResult) -> None:
    findings.observe(result)
    pipeline.apply(result)


def test_one_leak_pages_p0_with_digests_and_positions_and_no_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real SDK call with content capture on (redacted), the real `leak` evaluator emitting a log record,
    OTLP encoding, decode, windows and the real rule engine: one leak is enough for a P0."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    answer = f"The admin key is {OPENAI_KEY}; bill card {VISA}."
    t = make_telemetry()
    otel_llm.instrument(
        tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, logger_provider=t.logger_provider
    )
    try:
        otel_llm.enable_evaluation([leak], sample_rate=0.0)
        script = ScriptedResponder([Reply(text="All good, nothing to see."), Reply(text=answer)])
        with LLMServer(script) as server:
            _ask(server)
            _ask(server)
        otel_llm.disable_evaluation()
        spans = t.genai_spans()
        logs = t.logs.get_finished_logs()
    finally:
        otel_llm.uninstrument()
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()
        t.logger_provider.shutdown()
    assert len(spans) == 2
    secrets = (OPENAI_KEY, VISA, VISA.replace(" ", ""))

    # Telemetry the app sends: span attributes (content captured, but redacted) and evaluation records.
    span_text = json.dumps(
        [dict(s.attributes or {}) for s in spans]
        + [[dict(e.attributes or {}) for e in s.events] for s in spans]
    )
    log_text = json.dumps([dict(r.log_record.attributes or {}) for r in logs])
    assert "[REDACTED:openai_key]" in span_text  # the answer was captured, and redacted
    for secret in secrets:
        assert secret not in span_text
        assert secret not in log_text

    traces, evaluations = decode_traces(encode_spans(spans)), decode_logs(encode_logs(logs))
    assert len(traces.calls) == 2
    assert [(e.name, e.label) for e in evaluations.evaluations] == [("leak", "pass"), ("leak", "fail")]
    failing = evaluations.evaluations[1]
    start = answer.index(OPENAI_KEY)
    digest = hashlib.sha256(OPENAI_KEY.encode()).hexdigest()[:16]
    assert f"openai_key {start}-{start + len(OPENAI_KEY)} sha256:{digest}" in failing.explanation
    for secret in secrets:
        assert secret not in repr(evaluations)

    events: list[AlertEvent] = []
    pipeline, findings = _pipeline(events)
    _apply(pipeline, findings, traces)
    _apply(pipeline, findings, evaluations)
    latest = max(c.end_time_ns for c in traces.calls)
    pipeline.advance_watermark(latest + 2 * MINUTE_NS)
    (page,) = [e for e in events if e.status == "firing"]
    assert (page.rule, page.severity, page.value) == ("leak-p0", "P0", 1.0)
    assert page.series.feature == "support"
    notes = page.annotations["findings"]
    assert notes.startswith(f"{failing.trace_id}/{failing.span_id} leak: 2 leaks: openai_key {start}-")
    assert f"sha256:{digest}" in notes
    assert "card " in notes
    assert page.annotations["findings_count"] == "1"
    payloads = json.dumps([e.to_dict() for e in events]) + json.dumps([e.to_alertmanager() for e in events])
    for secret in secrets:
        assert secret not in payloads


KEY = SeriesKey("shop", "support", "answer", "v1", "gpt-4o-mini")


def _call(t_ns: int, n: int, key: SeriesKey = KEY) -> CallRecord:
    return CallRecord(series=key, end_time_ns=t_ns, duration_s=1.0, trace_id="ab" * 16, span_id=f"{n:016x}")


def _verdict(
    label: str, t_ns: int, n: int, explanation: str = "1 leak: email 0-9 sha256:00"
) -> EvaluationRecord:
    score = 1.0 if label == "fail" else 0.0
    return EvaluationRecord(
        "leak", t_ns, score, label=label, explanation=explanation, trace_id="ab" * 16, span_id=f"{n:016x}"
    )


def test_leak_rule_is_quiet_without_leaks_and_resolves_after_the_last() -> None:
    events: list[AlertEvent] = []
    pipeline, findings = _pipeline(events)
    calls = [_call(T0_NS + i * SECOND_NS, i) for i in range(600)]
    verdicts = [_verdict("fail" if i == 100 else "pass", T0_NS + i * SECOND_NS + 1, i) for i in range(600)]
    # The evaluations arrive first (the log exporter is quicker than the span exporter): they wait for
    # their calls in the join index, and the annotation still finds the series.
    _apply(pipeline, findings, DecodeResult(evaluations=tuple(verdicts[:200])))
    _apply(pipeline, findings, DecodeResult(calls=tuple(calls)))
    _apply(pipeline, findings, DecodeResult(evaluations=tuple(verdicts[200:])))
    for minute in range(11, 40):
        pipeline.advance_watermark(T0_NS + minute * MINUTE_NS)
    statuses = [(e.status, e.at_ns) for e in events if e.rule == "leak-p0"]
    fired_at = statuses[0][1]
    assert statuses[0][0] == "firing"
    assert statuses[1][0] == "resolved"
    assert len(statuses) == 2
    # Fires at the first tick after the leak's minute; quiet before it (no insufficient-data noise).
    assert fired_at <= T0_NS + 11 * MINUTE_NS
    firing = next(e for e in events if e.status == "firing")
    assert firing.annotations["findings"] == f"{'ab' * 16}/{100:016x} leak: 1 leak: email 0-9 sha256:00"


def test_no_leak_evaluations_is_fine_not_insufficient_data() -> None:
    condition = parse_condition("eval_fail_count{leak} > 0")
    assert condition.evaluate(WindowMetrics(None), min_samples=20).result is False
    engine = WindowEngine()
    engine.apply_calls([_call(T0_NS, 1)])
    engine.apply_evaluations([dataclasses.replace(_verdict("pass", T0_NS, 1), series=KEY)] * 3)
    engine.apply_evaluations([dataclasses.replace(_verdict("fail", T0_NS, 1), series=KEY)] * 2)
    verdict = condition.evaluate(WindowMetrics(engine.window(KEY, "5m")), min_samples=20)
    assert verdict == (True, 2.0)


def test_findings_are_redacted_bounded_and_only_for_watched_rules() -> None:
    engine = WindowEngine()
    findings = FindingsAnnotator(engine.join, max_kept=3, max_listed=2)
    engine.apply_calls([_call(T0_NS, i) for i in range(5)])
    careless = f"found {OPENAI_KEY} in the answer"  # an evaluator that copies text: redacted all the same
    findings.observe(
        DecodeResult(evaluations=tuple(_verdict("fail", T0_NS + i, i, careless) for i in range(5)))
    )
    assert (len(findings), findings.forgotten) == (3, 2)
    rules = _leak_rules()
    notes = findings.annotate(rules.rules[0], KEY, T0_NS + MINUTE_NS)
    assert notes["findings_count"] == "3"
    lines = notes["findings"].split("\n")
    assert lines == [f"{'ab' * 16}/{n:016x} leak: found [REDACTED:openai_key] in the answer" for n in (4, 3)]
    other = parse_rules({"rules": [{"name": "errors", "condition": "error_rate > 0.1", "severity": "P1"}]})[0]
    assert other is not None
    assert findings.annotate(other.rules[0], KEY, T0_NS + MINUTE_NS) == {}
    # Another series, or outside the rule's window: nothing found.
    assert findings.annotate(rules.rules[0], KEY._replace(feature="x"), T0_NS + MINUTE_NS)["findings"] == ""
    assert findings.annotate(rules.rules[0], KEY, T0_NS + 20 * MINUTE_NS)["findings_count"] == "0"
