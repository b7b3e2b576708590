"""Leak scanning: secrets and personal data in model output, reported by kind, position and hash only.

    from otel_llm.leaks import scan, leak

    scan("key: sk-proj-...")            # [Finding(kind='openai_key', start=5, end=53, digest='sha256:...')]
    otel_llm.enable_evaluation([leak])  # or OTEL_LLM_EVALUATORS=leak: every call's answer is scanned

`scan(text)` finds what `otel_llm.redaction` redacts (the same patterns, so a captured answer and a leak
alert agree) plus a few credential formats that are rare in prose but fatal in an answer:

| kind | what it matches |
|---|---|
| `anthropic_key`, `openai_key`, `aws_access_key` | as in `otel_llm.redaction` |
| `github_token`, `bearer_token` | as in `otel_llm.redaction` |
| `card` | 13-19 digits, a card prefix and a valid Luhn check (`4111 1111 1111 1112` is not a card) |
| `email`, `phone` | as in `otel_llm.redaction` (`+` international numbers, US numbers with separators) |
| `slack_token` | `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-` tokens with digits |
| `slack_webhook` | `https://hooks.slack.com/services/T.../B.../...` |
| `stripe_key` | `sk_live_`, `rk_live_`, `sk_test_`, `rk_test_` + 16 or more letters and digits |
| `google_api_key` | `AIza` + 35 key characters |
| `jwt` | three base64url parts, the first two starting `eyJ` (a signed token is a credential) |
| `private_key` | a PEM `-----BEGIN ... PRIVATE KEY-----` block |
| `generic_secret` | a secret-like prefix and `-` or `_`, then 20+ characters that look random |

`generic_secret` prefixes: `sk`, `pk`, `rk`, `api`, `key`, `token`, `secret`, `glpat`, `npm`, `hf`, `xai`,
`gsk`, `pplx`. "Look random" means letters and digits, distinct characters for at least 30% of the length,
and a change of character class (lower, upper, digit) between at least 30% of neighbouring characters: a
random base62 or hex string changes class about every second character, `key_1234567890_for_prod` or
`UserAccount2024Settings` rarely. The price: about 2% of random 24-character base62 bodies and 4% of
32-character hex ones change class too seldom and are missed (measured over 2,000 random keys each).

Not found: keys of other formats (an AWS secret access key is 40 bare base64 characters, indistinguishable
from a hash), names, street addresses, and secrets split over several lines or spelled out. A random
16-digit id that starts like a card passes the Luhn check one time in ten.

A finding carries its kind, its position as character offsets `[start, end)` in the scanned text, and a
digest: `sha256:` and the first 16 hex digits of the SHA-256 of the matched text, or `hmac-sha256:` and 16
hex digits of an HMAC when a hash key is set. Never the text. The digest lets whoever holds the secret
check it ("is that our production key?" -> hash it and compare) and lets alerts about the same secret be
grouped. For high-entropy keys a truncated SHA-256 reveals nothing; an email address, a phone number or a
card number can be found again by hashing every candidate, so set a hash key (`hash_key=`, or the
`OTEL_LLM_LEAK_HASH_KEY` environment variable) when those findings leave the app.

The `leak` evaluator (`LeakScanner`) scans a call's answer: 1.0 / `fail` with one or more findings, else
0.0 / `pass`; a failed call or an empty answer is not judged. The explanation lists kinds, positions and
digests (at most 10, then a count). A finding whose matched text also occurs in the user's own messages is
an echo (the user gave the bot their email address), not a leak: it is left out and counted. Secrets in the
system prompt or the retrieved documents are not excused: an answer that repeats them is the leak to catch.

Sampling. Leaks are rare and each one matters, so a sampled scan would miss most of them: the scanner is
marked `every_call`, and `otel_llm.enable_evaluation` runs such evaluators on a worker of their own at
sample rate 1.0, whatever the sample rate of the others (and out of reach of a slow judge filling the
sampled queue). Cost: well under a millisecond for a typical answer, on that worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

from otel_llm import redaction
from otel_llm.evaluators import EvaluationInput, EvaluationOutcome, _user_text

__all__ = ["HASH_KEY_ENV", "KINDS", "Finding", "LeakScanner", "leak", "scan"]

HASH_KEY_ENV: Final = "OTEL_LLM_LEAK_HASH_KEY"
DIGEST_HEX_CHARS: Final = 16
"""64 bits: enough to tell secrets apart in alerts, short enough to read."""
MAX_LISTED: Final = 10
"""Findings named in an explanation; the rest are counted."""


class Finding(NamedTuple):
    """One secret or piece of personal data: kind, character span `[start, end)` and digest; no text."""

    kind: str
    start: int
    end: int
    digest: str


def _class_changes(text: str) -> float:
    classes = [0 if c.islower() else 1 if c.isupper() else 2 for c in text if c.isalnum()]
    if len(classes) < 2:
        return 0.0
    return sum(a != b for a, b in itertools.pairwise(classes)) / (len(classes) - 1)


def _random_looking(match: str) -> bool:
    body = re.split(r"[-_]", match, maxsplit=1)[-1]
    chars = [c for c in body if c.isalnum()]
    has_digit = any(c.isdigit() for c in chars)
    has_alpha = any(c.isalpha() for c in chars)
    varied = len(set(chars)) >= 0.3 * len(chars)  # not `abc123abc123...`
    return has_digit and has_alpha and varied and _class_changes(body) >= 0.3


def _has_digit(match: str) -> bool:
    return any(c.isdigit() for c in match[5:])


class _Rule(NamedTuple):
    kind: str
    pattern: re.Pattern[str]
    validator: Callable[[str], bool] | None
    needles: tuple[str, ...]


# The formats `redaction` does not cover. Same style: a literal first, the preceding character checked by a
# lookbehind after it (so `re` skips ahead to candidates), a needle test before any scan.
_RULES: Final = (
    _Rule(
        "slack_token", re.compile(r"xox[abeoprs]-(?<![\w-]xox.-)[A-Za-z0-9-]{10,250}"), _has_digit, ("xox",)
    ),
    _Rule(
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"),
        None,
        ("hooks.slack.com",),
    ),
    _Rule(
        "stripe_key",
        re.compile(r"[sr]k_(?<![\w-].k_)(?:live|test)_[A-Za-z0-9]{16,247}"),
        None,
        ("k_live_", "k_test_"),
    ),
    _Rule("google_api_key", re.compile(r"AIza(?<![\w-]AIza)[0-9A-Za-z_-]{35}(?![\w-])"), None, ("AIza",)),
    _Rule(
        "jwt",
        re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        None,
        ("eyJ",),
    ),
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z ]{0,24}PRIVATE KEY(?: BLOCK)?-----[^-]{0,16384}"
            r"(?:-----END [A-Z ]{0,24}PRIVATE KEY(?: BLOCK)?-----)?"
        ),
        None,
        ("PRIVATE KEY",),
    ),
    # Several prefixes of different lengths: the boundary goes first here (slower, but needle-gated).
    _Rule(
        "generic_secret",
        re.compile(
            r"(?<![\w-])(?:sk|pk|rk|api|key|token|secret|glpat|npm|hf|xai|gsk|pplx)[-_][A-Za-z0-9_-]{20,250}"
        ),
        _random_looking,
        ("sk", "pk", "rk", "api", "key", "token", "secret", "glpat", "npm", "hf", "xai", "gsk", "pplx"),
    ),
)

KINDS: Final = (*redaction.KINDS, *dict.fromkeys(rule.kind for rule in _RULES))
"""Every kind `scan` can report."""


def _digest(matched: str, key: bytes | None) -> str:
    data = matched.encode("utf-8", "surrogatepass")
    if key:
        return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()[:DIGEST_HEX_CHARS]
    return "sha256:" + hashlib.sha256(data).hexdigest()[:DIGEST_HEX_CHARS]


def _spans(text: str) -> list[tuple[int, int, str]]:
    found = [(leak.start, leak.end, leak.kind) for leak in redaction.find_leaks(text)]
    for rule in _RULES:
        if not any(needle in text for needle in rule.needles):
            continue
        for match in rule.pattern.finditer(text):
            start, end = match.span()
            if rule.validator is not None and not rule.validator(match.group()):
                continue
            if any(start < f_end and f_start < end for f_start, f_end, _ in found):
                continue  # the redaction patterns take precedence, as they do when content is captured
            found.append((start, end, rule.kind))
    found.sort()
    return found


def scan(text: str, *, hash_key: bytes | None = None) -> list[Finding]:
    """Secrets and personal data in `text`, in order of position; never returns the matched text."""
    return [
        Finding(kind, start, end, _digest(text[start:end], hash_key)) for start, end, kind in _spans(text)
    ]


def _describe(findings: list[Finding]) -> str:
    listed = ", ".join(f"{f.kind} {f.start}-{f.end} {f.digest}" for f in findings[:MAX_LISTED])
    more = len(findings) - MAX_LISTED
    noun = "leak" if len(findings) == 1 else "leaks"
    return f"{len(findings)} {noun}: {listed}" + (f", +{more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class LeakScanner:
    """The `leak` evaluator: 1.0 / `fail` when the answer holds a secret or personal data (see above)."""

    name: str = "leak"
    hash_key: bytes | None = None
    """HMAC key for digests; None: the `OTEL_LLM_LEAK_HASH_KEY` environment variable, else plain SHA-256."""
    ignore_user_echo: bool = True
    """Leave out findings whose text the user sent in their own messages."""
    max_chars: int = 200_000
    """Only the first this many characters are scanned (the explanation says when an answer was cut)."""

    every_call: ClassVar[bool] = True
    """Run on every call, never sampled (see the module docstring)."""

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        if data.error_type or not data.response_text:
            return None
        text = data.response_text[: self.max_chars]
        key = self.hash_key if self.hash_key is not None else _env_key()
        findings: list[Finding] = []
        echoed = 0
        user_text = _user_text(data.request_messages) if self.ignore_user_echo else ""
        for start, end, kind in _spans(text):
            matched = text[start:end]
            if user_text and matched in user_text:
                echoed += 1
                continue
            findings.append(Finding(kind, start, end, _digest(matched, key)))
        notes = []
        if echoed:
            notes.append(f"{echoed} echoed from the user's messages ignored")
        if len(data.response_text) > self.max_chars:
            notes.append(f"only the first {self.max_chars} characters scanned")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        if not findings:
            return EvaluationOutcome(self.name, 0.0, "pass", "no secrets or personal data found" + suffix)
        return EvaluationOutcome(self.name, 1.0, "fail", _describe(findings) + suffix)


def _env_key() -> bytes | None:
    raw = os.environ.get(HASH_KEY_ENV)
    return raw.encode("utf-8") if raw else None


leak: Final = LeakScanner()
