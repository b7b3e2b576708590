"""Evaluators: plain callables from a finished call to a quality score, and three that need no network.

An evaluator is any callable `(EvaluationInput) -> EvaluationOutcome | None` (the `Evaluator` protocol).
It runs on the evaluation worker's thread, off the request path, so it may take milliseconds (or call a
judge model); it may raise, and the worker counts and logs that. `None` means "cannot judge this call"
(no context, empty answer, a failed call) and records nothing.

The three shipped here are cheap lexical heuristics. They catch blunt regressions (a price that is not in
the documents, a prompt change that makes the model refuse or drift off the question) and are meant to be
watched as rates over many calls, not trusted on a single answer. Their agreement with hand labels on two
small sets (`tests/instrumentation/data/eval_set.jsonl`, `judge_set.jsonl`) and their blind spots are in
`docs/evaluators.md`. Judge-model evaluators for the same qualities are in `otel_llm.judge`.

`groundedness` -> evaluation `faithfulness`, score in [0, 1]: the share of answer sentences supported by
the retrieved context. A sentence is supported when at least 60% of its content words (lower-cased,
truncated to 5 letters, stop words and conversational filler removed) occur in the context or the user's
question, *and* every number in it occurs in the context or the question. The number rule is strict on
purpose: an answer quoting last quarter's price ("$49" where the documents say "$39") shares every word with
the context and would pass on overlap alone. Label `pass` when the score is at least 0.8.

    Can judge: invented numbers, dates and quantities; sentences about things the context never mentions.
    Cannot judge: negation and contradiction with the same words ("does not include" vs "includes"),
    paraphrase with different words or spelled-out numbers ("thirty-nine dollars"), unit conversions,
    reasoning across sentences, and whether the context itself is right.

`refusal` -> evaluation `refusal`, 1.0 / `fail` when the answer contains a refusal ("I can't help with
that", "I'm unable to provide...", "As an AI...", "I must decline"), else 0.0 / `pass`.

    Can judge: the stock English refusal phrasings of current chat models, curly apostrophes included.
    Cannot judge: refusals in other languages or worded freshly ("That's outside what I can discuss"),
    partial answers that quietly leave out what was asked, and a quoted refusal inside a helpful answer
    (counted as a refusal).

`relevance` -> evaluation `answer_relevance`, score in [0, 1]: the share of the content words of the
question (the last user message; stemmed as above) that occur in the answer. Label `pass` at 0.5 or more.
A question without content words ("Why?") is not judged.

    Can judge: answers about another subject than the one asked about (the wrong product, the wrong
    document retrieved).
    Cannot judge: correct answers that share no word with the question ("What is the battery life?" ->
    "It lasts 40 hours"), synonyms, yes/no answers, and off-topic answers that repeat the question's words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "EvaluationInput",
    "EvaluationOutcome",
    "Evaluator",
    "Groundedness",
    "Refusal",
    "Relevance",
    "groundedness",
    "question_of",
    "refusal",
    "relevance",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationInput:
    """What an evaluator sees of one finished call."""

    request_messages: Sequence[Any] = ()
    """The request's input as sent: chat messages (dicts with `role` and `content`), or a plain string."""
    response_text: str = ""
    context: Sequence[str] = ()
    """The retrieved documents the answer should rest on (as given to `llm_context`)."""
    model: str | None = None
    feature: str | None = None
    tenant: str | None = None
    response_id: str | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluationOutcome:
    """One `gen_ai.evaluation.result`: see `otel_llm.evaluation` for the score conventions."""

    name: str
    score: float | None = None
    label: str | None = None
    explanation: str | None = None


class Evaluator(Protocol):
    """Runs on a worker thread; may block and may raise (the worker catches, counts and logs it)."""

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None: ...


# --- groundedness ---------------------------------------------------------------------------------------

# Function words and the conversational filler chat models wrap answers in; neither carries a claim.
_STOP_WORDS_TEXT: Final = """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each either else few for from further get
    gets got had has have having he her here hers herself him himself his how i if in into is it its itself
    just let me more most my myself no nor not of off on once only or other our ours ourselves out over own
    per same she should so some such than that the their theirs them themselves then there these they this
    those through to too under until up upon very via was we were what when where which while who whom why
    will with would you your yours yourself yourselves one ones may might must shall us
    sure great question happy hope helps help glad thanks thank please know need anything else feel free
    let's hi hello certainly absolutely course okay ok yes well"""
_STOP_WORDS: Final = frozenset(_STOP_WORDS_TEXT.split())
_NUMBER: Final = re.compile(r"\d+(?:[.,]\d+)*")
_WORD: Final = re.compile(r"[a-z][a-z']*")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s+|\n+")
_LIST_MARKER: Final = re.compile(r"^[ \t]*(?:[-*\u2022]|\d{1,2}[.)])[ \t]+", re.MULTILINE)
_CITATION: Final = re.compile(r"\[[^\]\n]{1,40}\]")
_STEM_LENGTH: Final = 5


def _normalise_number(raw: str) -> str:
    # "1,299" -> "1299"; "39.00" -> "39"; "4.5" stays.
    text = re.sub(r",(?=\d{3}\b)", "", raw).replace(",", ".")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _stem(word: str) -> str:
    # Truncation stemming: "include", "includes", "included" -> "inclu"; "companies", "company" -> "compa".
    # Crude, but symmetric on both sides and good enough for overlap counting in English.
    word = word.strip("'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:_STEM_LENGTH]


def _clean(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def _numbers(text: str) -> set[str]:
    return {_normalise_number(match) for match in _NUMBER.findall(text)}


def _content_words(text: str) -> set[str]:
    words = (word.strip("'") for word in _WORD.findall(_NUMBER.sub(" ", text)))
    return {_stem(word) for word in words if len(word) > 1 and word not in _STOP_WORDS}


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _user_messages(messages: Sequence[Any] | str) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    texts: list[str] = []
    for message in messages:
        if isinstance(message, str):
            texts.append(message)
        elif isinstance(message, Mapping) and message.get("role", "user") == "user":
            texts.append(_message_text(message.get("content")))
    return texts


def _user_text(messages: Sequence[Any] | str) -> str:
    return "\n".join(_user_messages(messages))


def question_of(messages: Sequence[Any] | str) -> str:
    """The text of the last user message (the question an answer should address); `""` when none."""
    for text in reversed(_user_messages(messages)):
        if text.strip():
            return text
    return ""


@dataclass(frozen=True, slots=True)
class Groundedness:
    """Share of answer sentences supported by the retrieved context (see the module docstring)."""

    min_overlap: float = 0.6
    """Share of a sentence's content words that must occur in the context or question."""
    pass_score: float = 0.8
    name: str = "faithfulness"

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        if data.error_type or not data.response_text.strip() or not any(doc.strip() for doc in data.context):
            return None
        question = _clean(_user_text(data.request_messages))
        evidence = _clean("\n".join(data.context))
        known_words = _content_words(evidence) | _content_words(question)
        known_numbers = _numbers(evidence) | _numbers(question)
        judged = supported = number_failures = 0
        for sentence in _sentences(_clean(data.response_text)):
            words = _content_words(sentence)
            numbers = _numbers(sentence)
            if not words and not numbers:
                continue  # "Sure!" and the like carry no claim
            judged += 1
            numbers_ok = numbers <= known_numbers
            overlap = len(words & known_words) / len(words) if words else 1.0
            if not numbers_ok:
                number_failures += 1
            elif overlap >= self.min_overlap:
                supported += 1
        if judged == 0:
            return None
        score = supported / judged
        explanation = f"{supported} of {judged} answer sentences supported by the retrieved context"
        if number_failures:
            explanation += f"; {number_failures} with a number absent from the context"
        return EvaluationOutcome(
            self.name, score, "pass" if score >= self.pass_score else "fail", explanation
        )


def _sentences(text: str) -> list[str]:
    text = _LIST_MARKER.sub("", _CITATION.sub(" ", text))
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


# --- refusal --------------------------------------------------------------------------------------------

_REFUSAL_VERBS: Final = (
    "help|assist|provide|share|answer|do|comply|fulfil|fulfill|support|create|generate|give|write|discuss|"
    "engage|offer|tell|disclose|continue|process|access|reveal|complete|perform|make"
)
_I_WONT: Final = (
    r"(?:i (?:can't|cannot|can not|won't be able to|will not be able to|won't|will not)"
    r"|i(?:'m| am) (?:unable to|not able to|not going to))"
)
_REFUSALS: Final = re.compile(
    "|".join(
        (
            rf"\b{_I_WONT} (?:{_REFUSAL_VERBS})\b(?! but\b)",
            r"\bas an ai\b",
            r"\bi (?:must|have to|need to|will have to) (?:respectfully )?(?:decline|refuse)\b",
            r"\bi(?:'m| am) not (?:allowed|permitted|authorized|authorised) to\b",
            rf"\bnot something i (?:can|am able to|'m able to) (?:{_REFUSAL_VERBS})\b",
            r"\b(?:goes against|violates) (?:my|our|the) (?:guidelines|policies|policy|usage polic)",
        )
    )
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Refusal detector: 1.0 / `fail` when the answer refuses, 0.0 / `pass` otherwise."""

    name: str = "refusal"

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        if data.error_type or not data.response_text.strip():
            return None
        match = _REFUSALS.search(_clean(data.response_text))
        if match is None:
            return EvaluationOutcome(self.name, 0.0, "pass", "no refusal phrase found")
        return EvaluationOutcome(self.name, 1.0, "fail", f"refusal phrase at character {match.start()}")


# --- relevance ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relevance:
    """Share of the question's content words that the answer takes up (see the module docstring)."""

    pass_score: float = 0.5
    name: str = "answer_relevance"

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        if data.error_type or not data.response_text.strip():
            return None
        asked = _content_words(_clean(question_of(data.request_messages)))
        if not asked:
            return None  # "Why?" or a question in numbers only: nothing to match
        taken_up = len(asked & _content_words(_clean(data.response_text)))
        score = taken_up / len(asked)
        return EvaluationOutcome(
            self.name,
            score,
            "pass" if score >= self.pass_score else "fail",
            f"{taken_up} of {len(asked)} content words of the question occur in the answer",
        )


groundedness: Final = Groundedness()
refusal: Final = Refusal()
relevance: Final = Relevance()
