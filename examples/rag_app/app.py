"""A small retrieval-augmented answer service over a product's pricing documents.

It retrieves the documents that share the most words with the question, puts them in the prompt and asks an
OpenAI-compatible chat model. There is no instrumentation code here: run it under `opentelemetry-instrument`
and `otel_llm` (found through its `opentelemetry_instrumentor` entry point) traces every model call. The
`llm_context` block only describes the call (feature, prompt version, retrieved context); without
instrumentation it does nothing and the app runs the same.

    python -m otel_llm.testing.llm_server --port 8000 &
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=test \\
        opentelemetry-instrument python examples/rag_app/app.py ["your question" ...]

`OPENAI_BASE_URL` defaults to the local server above, so the example never reaches the network by accident.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import openai

from otel_llm import llm_context

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
MODEL = os.environ.get("RAG_MODEL", "gpt-4o-mini")
FEATURE = "pricing-answer"
PROMPT_NAME = "pricing-rag"
PROMPT_VERSION = "1.0.0"
TOP_K = 2

SYSTEM_PROMPT = (
    "You answer questions about our pricing. Use only the documents provided. "
    "If they do not contain the answer, say that you do not know."
)


@dataclass(frozen=True, slots=True)
class Document:
    source: str
    text: str


DOCUMENTS: tuple[Document, ...] = (
    Document(
        "docs/pricing/plans.md",
        "The Starter plan is free for up to 3 users. The Pro plan costs 49 dollars per user per month. "
        "The Enterprise plan is priced per contract.",
    ),
    Document(
        "docs/pricing/billing.md",
        "Yearly billing gives a discount of two months compared with monthly billing. Invoices are sent "
        "on the first day of each billing period.",
    ),
    Document(
        "docs/pricing/refunds.md",
        "Refunds are available within 30 days of purchase for yearly plans. Monthly plans can be cancelled "
        "at any time and are not refunded.",
    ),
    Document(
        "docs/pricing/limits.md",
        "The Pro plan includes 100 GB of storage and 10,000 API calls per day. Extra API calls cost "
        "1 dollar per 1,000 calls.",
    ),
    Document(
        "docs/pricing/students.md",
        "Students and teachers get the Pro plan at half price with a valid academic email address.",
    ),
)

QUESTIONS: tuple[str, ...] = (
    "How much does the Pro plan cost per month?",
    "Is there a discount for yearly billing?",
    "Can I get a refund on a monthly plan?",
    "How many API calls per day does the Pro plan include?",
)

_STOPWORDS = frozenset(
    {"a", "an", "and", "are", "at", "can", "do", "does", "for", "get", "how", "i", "in", "is", "it", "many"}
    | {"much", "of", "on", "or", "per", "the", "there", "to", "what", "with"}
)
_WORD = re.compile(r"[a-z0-9]+")


def terms(text: str) -> frozenset[str]:
    """The lower-cased content words of a text, stop words dropped and a plural `s` stripped."""
    words = (w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


def retrieve(question: str, documents: Sequence[Document] = DOCUMENTS, *, k: int = TOP_K) -> list[Document]:
    """The `k` documents sharing the most words with the question; none when nothing overlaps."""
    wanted = terms(question)
    scored = [(len(wanted & terms(d.text)), i, d) for i, d in enumerate(documents)]
    ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
    return [d for _, _, d in ranked[:k]]


def build_messages(question: str, documents: Sequence[Document]) -> list[dict[str, str]]:
    context = "\n\n".join(f"[{d.source}]\n{d.text}" for d in documents) or "(no documents found)"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Documents:\n{context}\n\nQuestion: {question}"},
    ]


def answer(client: openai.OpenAI, question: str) -> str:
    documents = retrieve(question)
    with llm_context(
        feature=FEATURE,
        prompt_name=PROMPT_NAME,
        prompt_version=PROMPT_VERSION,
        path="retrieval" if documents else "no-context",
        context_documents=len(documents),
        context_chars=sum(len(d.text) for d in documents),
        context_sources=[d.source for d in documents],
        retrieved_context=[d.text for d in documents],
    ):
        completion = client.chat.completions.create(
            model=MODEL,
            messages=build_messages(question, documents),  # type: ignore[arg-type]
            temperature=0,
            max_tokens=200,
        )
    return completion.choices[0].message.content or ""


def main(argv: Sequence[str] | None = None) -> int:
    questions = list(sys.argv[1:] if argv is None else argv) or list(QUESTIONS)
    client = openai.OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
        api_key=os.environ.get("OPENAI_API_KEY") or "test",
        max_retries=1,
        timeout=30.0,
    )
    with client:
        for question in questions:
            sources = ", ".join(d.source for d in retrieve(question)) or "none"
            print(f"Q: {question}\nA: {answer(client, question)}\n   (sources: {sources})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
