"""Alerts as the alert engine hands them over, for the notification tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from otel_llm_collector.notify import Alert, AlertStatus

T0 = datetime(2025, 3, 4, 10, 22, tzinfo=UTC)


def make_alert(
    *,
    alertname: str = "FaithfulnessLow",
    severity: str = "P1",
    service: str = "checkout",
    feature: str = "support",
    prompt_version: str = "v2",
    status: AlertStatus = "firing",
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    value: str = "0.55",
) -> Alert:
    return Alert(
        status=status,
        labels={
            "alertname": alertname,
            "severity": severity,
            "service": service,
            "feature": feature,
            "prompt_name": "rag-answer",
            "prompt_version": prompt_version,
            "model": "gpt-4o-mini",
        },
        annotations={
            "summary": f"{alertname} on {service}/{feature}",
            "description": "faithfulness mean below 0.65 for 10 minutes",
            "value": value,
            "runbook_url": "https://runbooks.example.com/faithfulness",
            "deployment": "checkout 1.4.2 at 10:12 (strong)",
        },
        starts_at=starts_at,
        ends_at=ends_at,
    )


def resolved(alert: Alert, at: datetime) -> Alert:
    return Alert(
        status="resolved",
        labels=alert.labels,
        annotations=alert.annotations,
        starts_at=alert.starts_at,
        ends_at=at,
        fingerprint=alert.fingerprint,
    )


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
