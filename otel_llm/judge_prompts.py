"""Judge prompts shipped with the package, and the strict reading of a judge's answer.

    from otel_llm.judge_prompts import load_prompt, parse_verdict

    prompt = load_prompt("faithfulness")                 # the newest shipped version: faithfulness.v1
    system, user = prompt.render(question="...", context=["..."], answer="...")
    parse_verdict('{"score": 0.9, "explanation": "Every claim is in the context."}')
    # -> Parsed(score=0.9, explanation='Every claim is in the context.')

Shipped criteria (`CRITERIA`), with the score conventions of `otel_llm.evaluation`:

| prompt (= evaluation name) | score | label | inputs |
|---|---|---|---|
| `faithfulness` | share of claims supported by the context | `pass` >= 0.5 | context required |
| `answer_relevance` | 1 addresses the question, 0 does not | `pass` >= 0.5 | question required |
| `hallucination` | confidence that a claim is fabricated | `fail` >= 0.5 | context used if any |
| `toxicity` | 0 not toxic, 1 clearly toxic | `fail` >= 0.5 | the answer only |

Versioned: each prompt is one file, `otel_llm/data/judge.<criterion>.<version>.json` (system and user
message as lists of lines, the evaluation name, the score direction and threshold). A changed prompt is a
new version in a new file, never an edit of a shipped one, so that scores recorded under `faithfulness.v1`
stay comparable with each other; the prompt id goes into every judge evaluation's explanation. Your own
prompt in the same shape: `load_prompt_file(path)`.

The output contract, the same for every prompt: the judge answers with one JSON object
`{"score": <number in [0, 1]>, "explanation": "<short sentence>"}`. `parse_verdict` accepts exactly that,
optionally inside one Markdown code fence (```json ... ```), and nothing else: no prose before or after,
no other or duplicate keys, no score as a string, outside [0, 1], NaN or a boolean, no empty explanation.
Anything else is unparseable (`None`): counted by the judge, never turned into a score. An explanation
longer than `MAX_EXPLANATION_CHARS` is cut, not rejected.

Untrusted text (question, documents, answer) is placed inside tags, and the system prompt tells the judge
to treat it as data. Our tag names inside that text are defused (`<answer>` -> `&lt;answer>`), so an answer
cannot close its tag and append instructions; a judge model can still be swayed by what it reads, which is
one more reason to watch judge scores as rates. Long inputs are cut (`max_chars`, marked `[truncated]`)
to bound the judge's cost.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

__all__ = [
    "CRITERIA",
    "MAX_EXPLANATION_CHARS",
    "JudgePrompt",
    "Parsed",
    "load_prompt",
    "load_prompt_file",
    "parse_verdict",
]

CRITERIA: Final = ("faithfulness", "answer_relevance", "hallucination", "toxicity")
MAX_EXPLANATION_CHARS: Final = 300
_DATA_DIR: Final = Path(__file__).with_name("data")
_PLACEHOLDER: Final = re.compile(r"\{(question|context|answer)\}")
_OUR_TAGS: Final = re.compile(r"<(/?)(question|context|answer)>", re.IGNORECASE)
_FENCE: Final = re.compile(r"\A```(?:json)?[ \t]*\n(.*)\n[ \t]*```\Z", re.DOTALL | re.IGNORECASE)
_TRUNCATED: Final = "\n[truncated]"
_NO_CONTEXT: Final = "(no context was retrieved)"
_INPUTS: Final = frozenset({"question", "context"})


class Parsed(NamedTuple):
    """A verdict that followed the output contract."""

    score: float
    explanation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgePrompt:
    """One version of one judge prompt; see the module docstring for the file format."""

    criterion: str
    version: str
    evaluation: str
    """The `gen_ai.evaluation.name` its scores are recorded under."""
    higher_is_better: bool
    threshold: float
    """`pass` at or above it when higher is better; `fail` at or above it otherwise."""
    requires: frozenset[str]
    """Inputs without which a call is not judged: `question`, `context`."""
    system: str
    user: str

    @property
    def id(self) -> str:
        return f"{self.criterion}.{self.version}"

    def label(self, score: float) -> str:
        if self.higher_is_better:
            return "pass" if score >= self.threshold else "fail"
        return "fail" if score >= self.threshold else "pass"

    def render(
        self, *, question: str = "", context: Sequence[str] = (), answer: str = "", max_chars: int = 24_000
    ) -> tuple[str, str]:
        """(system message, user message) for these inputs; each input cut to `max_chars` characters."""
        documents = [doc for doc in context if doc.strip()]
        joined = "\n\n".join(f"[{index}] {doc.strip()}" for index, doc in enumerate(documents, 1))
        values = {
            "question": _defuse(_cut(question.strip(), max_chars)),
            "context": _defuse(_cut(joined, max_chars)) if documents else _NO_CONTEXT,
            "answer": _defuse(_cut(answer.strip(), max_chars)),
        }
        # One pass, so that a "{context}" inside the answer is not substituted in turn.
        return self.system, _PLACEHOLDER.sub(lambda match: values[match.group(1)], self.user)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any], origin: str = "prompt") -> JudgePrompt:
        """Validates the shape; raises `ValueError` naming `origin` and the field."""

        def text(field: str) -> str:
            value = document.get(field)
            if isinstance(value, list) and all(isinstance(line, str) for line in value):
                value = "\n".join(value)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{origin}: `{field}` must be a non-empty string or list of strings")
            return value

        threshold = document.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise ValueError(f"{origin}: `threshold` must be a number in [0, 1]")
        higher = document.get("higher_is_better")
        if not isinstance(higher, bool):
            raise ValueError(f"{origin}: `higher_is_better` must be true or false")
        requires = document.get("requires", [])
        if not isinstance(requires, list) or not set(requires) <= _INPUTS:
            raise ValueError(f"{origin}: `requires` must list some of {sorted(_INPUTS)}")
        user = text("user")
        if "{answer}" not in user:
            raise ValueError(f"{origin}: the user message must contain {{answer}}")
        return cls(
            criterion=text("criterion"),
            version=text("version"),
            evaluation=text("evaluation"),
            higher_is_better=higher,
            threshold=float(threshold),
            requires=frozenset(requires),
            system=text("system"),
            user=user,
        )


def load_prompt_file(path: str | os.PathLike[str]) -> JudgePrompt:
    """A prompt from a JSON file of the shipped shape; raises `OSError` or `ValueError`."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, Mapping):
        raise ValueError(f"{path}: expected a JSON object")
    return JudgePrompt.from_mapping(document, str(path))


@functools.cache
def load_prompt(criterion: str, version: str | None = None) -> JudgePrompt:
    """A shipped prompt: `version` ("v1") or the newest; raises `ValueError` naming what is shipped."""
    versions = {path.name.split(".")[2]: path for path in _DATA_DIR.glob(f"judge.{criterion}.v*.json")}
    if not versions:
        raise ValueError(f"no judge prompt for {criterion!r}; shipped: {', '.join(CRITERIA)}")
    chosen = version or max(versions, key=lambda name: int(name[1:]) if name[1:].isdigit() else -1)
    if chosen not in versions:
        raise ValueError(f"no version {chosen!r} of judge prompt {criterion!r}; shipped: {sorted(versions)}")
    return load_prompt_file(versions[chosen])


def parse_verdict(text: str) -> Parsed | None:
    """The verdict in a judge's answer, or `None` when it breaks the output contract in any way."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced is not None:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or set(value) != {"score", "explanation"}:
        return None
    score, explanation = value["score"], value["explanation"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return None
    if not 0 <= score <= 1 or not isinstance(explanation, str) or not explanation.strip():
        return None
    explanation = " ".join(explanation.split())
    if len(explanation) > MAX_EXPLANATION_CHARS:
        explanation = explanation[: MAX_EXPLANATION_CHARS - 1] + "\u2026"
    return Parsed(float(score), explanation)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a score")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + _TRUNCATED


def _defuse(text: str) -> str:
    return _OUR_TAGS.sub(lambda match: f"&lt;{match.group(1)}{match.group(2)}>", text)
