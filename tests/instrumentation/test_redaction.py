from __future__ import annotations

import hashlib

import pytest

from otel_llm.redaction import KINDS, Leak, find_leaks, redact, redact_value

OPENAI_KEY = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zB9cD1fG3hJ5kL7"
OPENAI_LEGACY_KEY = "sk-" + "T3BlbkFJ" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa-_xy"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"

POSITIVES = [
    # (text, kind, the matched substring)
    (f"my key is {OPENAI_KEY}.", "openai_key", OPENAI_KEY),
    (f"OPENAI_API_KEY={OPENAI_LEGACY_KEY}", "openai_key", OPENAI_LEGACY_KEY),
    (f"use {ANTHROPIC_KEY} for claude", "anthropic_key", ANTHROPIC_KEY),
    (f"aws_access_key_id = {AWS_KEY}", "aws_access_key", AWS_KEY),
    (f"token: {GITHUB_TOKEN}", "github_token", GITHUB_TOKEN),
    ("github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789", "github_token", None),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_part", "bearer_token", None),
    ("write to jane.doe+billing@example.co.uk today", "email", "jane.doe+billing@example.co.uk"),
    ("ADMIN@Corp-Mail.COM", "email", "ADMIN@Corp-Mail.COM"),
    ("call +1 (415) 555-2671 now", "phone", "+1 (415) 555-2671"),
    ("call +14155552671", "phone", "+14155552671"),
    ("London office: +44 20 7946 0958.", "phone", "+44 20 7946 0958"),
    ("Berlin +49 30 901820", "phone", "+49 30 901820"),
    ("US desk (555) 123-4567", "phone", "(555) 123-4567"),
    ("US desk 555-123-4567.", "phone", "555-123-4567"),
    ("toll free 1-800-555-0199", "phone", "1-800-555-0199"),
    ("dots 555.123.4567", "phone", "555.123.4567"),
    ("card 4111 1111 1111 1111 exp 12/29", "card", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111", "card", "4111-1111-1111-1111"),
    ("stripe test 4242424242424242", "card", "4242424242424242"),
    ("amex 3782 822463 10005", "card", "3782 822463 10005"),
    ("mastercard 5555555555554444.", "card", "5555555555554444"),
]


@pytest.mark.parametrize(("text", "kind", "matched"), POSITIVES)
def test_finds_and_redacts_each_kind(text: str, kind: str, matched: str | None) -> None:
    leaks = find_leaks(text)
    assert [leak.kind for leak in leaks] == [kind]
    leak = leaks[0]
    if matched is not None:
        assert text[leak.start : leak.end] == matched
    assert leak.sha256 == hashlib.sha256(text[leak.start : leak.end].encode()).hexdigest()
    redacted = redact(text)
    assert f"[REDACTED:{kind}]" in redacted
    assert text[leak.start : leak.end] not in redacted


NEGATIVES = [
    "xghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 is glued to a word.",
    "MYAKIAIOSFODNN7EXAMPLE is glued to a word.",
    "In 2024 we sold 15000 units, up from 9800 in 2023.",
    "Released on 2024-05-01 at 12:30:45, version 3.11.4.",
    "Server at 192.168.100.200 port 8443.",
    "Order number 4111111111111112 is shipped.",  # fails the Luhn check
    "Tracking 1700000000000 and id 1234567890123456789.",  # no card prefix
    "Timestamp 1700000000000000000 nanoseconds.",
    "Use sk-learn-is-a-machine-learning-library-for-python instead.",
    "The task-abcdefghijklmnopqrstuvwxyz0123456789 finished.",  # `sk-` inside a word
    "He was the bearer of bad news.",
    "Bearer tokens are sent in a header.",
    "Email me at support (at) example dot com.",
    "Reach the user@localhost account.",
    "Score was 3+4 = 7 and +15% growth.",
    "ISBN 978-3-16-148410-0 is a book.",
    "SSN-like 123-45-6789 is not a phone format.",
    "Price $1,299.00 for 12 months, 10% off.",
    "Call ext. 5551234567 is an id without separators.",
    "akiaiosfodnn7example is lower case.",
    "ghp_short is not a token.",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_leaves_tricky_negatives_alone(text: str) -> None:
    assert find_leaks(text) == []
    assert redact(text) is text


def test_bearer_keeps_the_word_and_redacts_the_token() -> None:
    assert (
        redact("Authorization: Bearer abcdefghijklmnop1234")
        == "Authorization: Bearer [REDACTED:bearer_token]"
    )


def test_overlap_goes_to_the_more_specific_kind() -> None:
    text = f"Authorization: Bearer {OPENAI_KEY}"
    assert [leak.kind for leak in find_leaks(text)] == ["openai_key"]
    assert redact(text) == "Authorization: Bearer [REDACTED:openai_key]"


def test_several_findings_come_back_in_text_order() -> None:
    text = f"mail a@b.io, key {ANTHROPIC_KEY}, phone +1 415 555 2671, card 4242 4242 4242 4242."
    leaks = find_leaks(text)
    assert [leak.kind for leak in leaks] == ["email", "anthropic_key", "phone", "card"]
    assert all(isinstance(leak, Leak) for leak in leaks)
    assert redact(text) == (
        "mail [REDACTED:email], key [REDACTED:anthropic_key], phone [REDACTED:phone], card [REDACTED:card]."
    )


def test_leak_never_carries_the_secret() -> None:
    (leak,) = find_leaks(f"key {OPENAI_KEY}")
    assert OPENAI_KEY not in repr(leak)
    assert len(leak.sha256) == 64


def test_redact_value_walks_messages() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "I am jane@example.com"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"arguments": '{"card": "4242424242424242"}'}]},
    ]
    assert redact_value(messages) == [
        {"role": "user", "content": [{"type": "text", "text": "I am [REDACTED:email]"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"arguments": '{"card": "[REDACTED:card]"}'}]},
    ]


def test_kinds_are_listed_in_priority_order() -> None:
    assert KINDS == (
        "anthropic_key",
        "openai_key",
        "aws_access_key",
        "github_token",
        "bearer_token",
        "card",
        "email",
        "phone",
    )
