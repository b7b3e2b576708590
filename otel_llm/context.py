"""Context the GenAI conventions lack, set once by the app and attached to every GenAI span inside it.

    from otel_llm import llm_context

    with llm_context(feature="support-answer", prompt_name="answer", prompt_version="3.2.0",
                     context_documents=len(docs), context_chars=sum(map(len, docs)),
                     context_sources=[d.url for d in docs]):
        client.chat.completions.create(...)

The values live in a `contextvars.ContextVar`, so they follow the code: nested blocks merge over their
parent, asyncio tasks inherit the context of the code that created them, and (with the instrumentor's
executor patch, on by default) so do functions submitted to a `ThreadPoolExecutor`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Any

from otel_llm import attributes as attr


@dataclass(frozen=True, slots=True)
class LLMContext:
    """What the app knows about the calls it is about to make; `None` means "not set"."""

    feature: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    context_documents: int | None = None
    context_tokens: int | None = None
    context_chars: int | None = None
    context_sources: tuple[str, ...] | None = None
    path: str | None = None
    conversation_id: str | None = None
    tenant: str | None = None
    segments: tuple[tuple[str, str], ...] = ()
    retrieved_context: tuple[str, ...] | None = None
    """The retrieved passages themselves, for evaluators; never put on spans."""

    def span_attributes(self) -> dict[str, Any]:
        """The attributes this context contributes to a GenAI span."""
        out: dict[str, Any] = {}
        if self.feature is not None:
            out[attr.FEATURE] = self.feature
        if self.prompt_name is not None:
            out[attr.GEN_AI_PROMPT_NAME] = self.prompt_name
        if self.prompt_version is not None:
            out[attr.GEN_AI_PROMPT_VERSION] = self.prompt_version
        if self.context_documents is not None:
            out[attr.CONTEXT_DOCUMENTS] = self.context_documents
        if self.context_tokens is not None:
            out[attr.CONTEXT_TOKENS] = self.context_tokens
        if self.context_chars is not None:
            out[attr.CONTEXT_CHARS] = self.context_chars
        if self.context_sources is not None:
            out[attr.CONTEXT_SOURCES] = list(self.context_sources)
        if self.path is not None:
            out[attr.CONDITIONAL_PATH] = self.path
        if self.conversation_id is not None:
            out[attr.GEN_AI_CONVERSATION_ID] = self.conversation_id
        if self.tenant is not None:
            out[attr.TENANT] = self.tenant
        for key, value in self.segments:
            out[attr.SEGMENT_PREFIX + key] = value
        return out


_EMPTY = LLMContext()
EMPTY_CONTEXT = _EMPTY
"""The context in force where the app set none (compared by identity on the hot path)."""
_current: ContextVar[LLMContext] = ContextVar("otel_llm_context", default=_EMPTY)
_FIELD_NAMES = frozenset(f.name for f in fields(LLMContext))


def current_context() -> LLMContext:
    """The context in force here (an empty one when none was set)."""
    return _current.get()


def _normalise(values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - _FIELD_NAMES
    if unknown:
        raise TypeError(f"llm_context() got unknown fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in ("context_sources", "retrieved_context"):
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(f"llm_context({name}=...) takes a sequence of strings")
            value = tuple(str(v) for v in value)
        elif name == "segments":
            items = value.items() if isinstance(value, Mapping) else value
            value = tuple((str(k), str(v)) for k, v in items)
        out[name] = value
    return out


@contextlib.contextmanager
def llm_context(
    *,
    feature: str | None = None,
    prompt_name: str | None = None,
    prompt_version: str | None = None,
    context_documents: int | None = None,
    context_tokens: int | None = None,
    context_chars: int | None = None,
    context_sources: Sequence[str] | None = None,
    path: str | None = None,
    conversation_id: str | None = None,
    tenant: str | None = None,
    segments: Mapping[str, str] | None = None,
    retrieved_context: Sequence[str] | None = None,
) -> Iterator[LLMContext]:
    """Attach these values to every GenAI call made inside the block (merged over the enclosing ones)."""
    given = _normalise(
        {
            "feature": feature,
            "prompt_name": prompt_name,
            "prompt_version": prompt_version,
            "context_documents": context_documents,
            "context_tokens": context_tokens,
            "context_chars": context_chars,
            "context_sources": context_sources,
            "path": path,
            "conversation_id": conversation_id,
            "tenant": tenant,
            "segments": segments,
            "retrieved_context": retrieved_context,
        }
    )
    parent = _current.get()
    if "segments" in given:
        given["segments"] = tuple({**dict(parent.segments), **dict(given["segments"])}.items())
    merged = replace(parent, **given)
    token = _current.set(merged)
    try:
        yield merged
    finally:
        _current.reset(token)
