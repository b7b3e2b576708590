"""Which HTTP requests are LLM calls: detection by path, so any base URL works.

OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM and other OpenAI-compatible servers all end their paths the
same way (`.../chat/completions`, `.../responses`, `.../embeddings`); Anthropic's is `.../v1/messages`.
Extra suffixes can be configured (`OTEL_LLM_EXTRA_PATHS="/my/chat=openai.chat,..."`). The check runs on
every request the app sends, so it is a method test and a few `bytes.endswith` calls on the raw path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ApiKind = Literal["openai.chat", "openai.responses", "openai.embeddings", "anthropic.messages"]
API_KINDS: Final[tuple[ApiKind, ...]] = (
    "openai.chat",
    "openai.responses",
    "openai.embeddings",
    "anthropic.messages",
)

_OPERATION: Final[dict[ApiKind, str]] = {
    "openai.chat": "chat",
    "openai.responses": "chat",
    "openai.embeddings": "embeddings",
    "anthropic.messages": "chat",
}

# Hosts whose provider is known; anything else is named after the wire API it speaks.
_PROVIDER_BY_HOST_SUFFIX: Final[tuple[tuple[str, str], ...]] = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.openai"),
    ("api.anthropic.com", "anthropic"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
)

DEFAULT_SUFFIXES: Final[tuple[tuple[bytes, ApiKind], ...]] = (
    (b"/chat/completions", "openai.chat"),
    (b"/responses", "openai.responses"),
    (b"/embeddings", "openai.embeddings"),
    (b"/v1/messages", "anthropic.messages"),
)


@dataclass(frozen=True, slots=True)
class Route:
    """A detected LLM endpoint."""

    api: ApiKind
    operation: str
    provider: str
    server_address: str
    server_port: int | None


def operation_for(api: ApiKind) -> str:
    return _OPERATION[api]


_provider_cache: dict[tuple[str, str, bool], str] = {}


def provider_for(api: ApiKind, host: str, path: bytes) -> str:
    """The `gen_ai.provider.name` of a request (memoised per host: this runs on every call)."""
    azure_path = b"/openai/deployments/" in path
    key = (api, host, azure_path)
    found = _provider_cache.get(key)
    if found is None:
        found = _provider(api, host, azure_path)
        if len(_provider_cache) > 1024:
            _provider_cache.clear()
        _provider_cache[key] = found
    return found


def _provider(api: ApiKind, host: str, azure_path: bool) -> str:
    for suffix, provider in _PROVIDER_BY_HOST_SUFFIX:
        if host.endswith(suffix):
            return provider
    if azure_path:
        return "azure.ai.openai"
    return "anthropic" if api == "anthropic.messages" else "openai"


_route_cache: dict[tuple[ApiKind, str, int | None, bool], Route] = {}


def route_for(api: ApiKind, host: str, port: int | None, path: bytes) -> Route:
    """The `Route` of a request, one shared instance per endpoint (this runs on every call)."""
    key = (api, host, port, b"/openai/deployments/" in path)
    found = _route_cache.get(key)
    if found is None:
        found = Route(api, _OPERATION[api], provider_for(api, host, path), host, port)
        if len(_route_cache) > 1024:
            _route_cache.clear()
        _route_cache[key] = found
    return found


def parse_extra_paths(spec: str) -> tuple[tuple[bytes, ApiKind], ...]:
    """Parse `"/suffix=api,/other=api"`; raise `ValueError` naming the bad entry."""
    out: list[tuple[bytes, ApiKind]] = []
    for raw_entry in spec.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        suffix, sep, api = entry.partition("=")
        api = api.strip()
        if not sep or not suffix.strip().startswith("/") or api not in API_KINDS:
            raise ValueError(f"bad path entry {entry!r}: expected '/path/suffix=<{'|'.join(API_KINDS)}>'")
        out.append((suffix.strip().rstrip("/").encode(), api))
    return tuple(out)


class EndpointMatcher:
    """Decides, per request, whether it is an LLM call; cheap for everything else."""

    __slots__ = ("_suffixes",)

    def __init__(self, extra: tuple[tuple[bytes, ApiKind], ...] = ()) -> None:
        # Extras first so a user's suffix can claim a path the defaults would also match.
        self._suffixes = (*extra, *DEFAULT_SUFFIXES)

    def match(self, method: str, raw_path: bytes) -> ApiKind | None:
        """The API kind of a request, or `None` if it is not an LLM call."""
        if method != "POST":
            return None
        path = raw_path.split(b"?", 1)[0].rstrip(b"/")
        for suffix, api in self._suffixes:
            if path.endswith(suffix):
                return api
        return None
