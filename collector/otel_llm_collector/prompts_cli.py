"""``otel-llm prompts ...`` and ``otel-llm switches ...``: the control API from a terminal or a CI job.

    otel-llm prompts list
    otel-llm prompts versions NAME
    otel-llm prompts active NAME
    otel-llm prompts register NAME VERSION --file prompt.txt [--metadata JSON] [--baseline quality=0.85]...
                             [--auto-rollback]
    otel-llm prompts deploy NAME VERSION [--reason TEXT]
    otel-llm prompts promote NAME VERSION [--reason TEXT] [--allow-marginal]   (deploy on canary pass)
    otel-llm prompts rollback NAME --reason TEXT
    otel-llm prompts deprecate NAME VERSION [--reason TEXT]
    otel-llm prompts audit [NAME]
    otel-llm switches list
    otel-llm switches set SERVICE FEATURE KIND [--value TEXT | --from MODEL --to MODEL] [--reason TEXT]
    otel-llm switches clear SERVICE FEATURE KIND [--reason TEXT]

Every command talks to a running collector (``--url``, default ``http://127.0.0.1:9464``); changes send
the bearer token from ``--token``, else ``OTEL_LLM_API_TOKEN``. ``--by`` (default: the login name) is who
the audit log records. ``--json`` prints the server's answer as is, for scripts.

Exit codes: 0 done; 1 the server refused (its message is printed: 409 conflict, 404, 401/403 token) or
could not be reached; 2 a usage error found before any request (bad flag, unreadable ``--file``, no
token for a change).

Wiring: `add_parser(subparsers)` registers ``prompts`` and ``switches`` and sets ``run`` on the namespace;
`main(argv)` runs them on their own.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from otel_llm_collector.registry import BASELINE_KEYS
from otel_llm_collector.switches import KINDS

__all__ = ["DEFAULT_URL", "TOKEN_ENV", "add_parser", "main"]

DEFAULT_URL = "http://127.0.0.1:9464"
TOKEN_ENV = "OTEL_LLM_API_TOKEN"
TIMEOUT_SECONDS = 10.0
OK = 0
FAILED = 1
USAGE_ERROR = 2


class _Usage(Exception):
    """A problem with the command line found before any request: exit 2."""


class _Failed(Exception):
    """The server refused or could not be reached: exit 1."""


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in containers without a passwd entry
        return "cli"


def _request(
    args: argparse.Namespace, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
) -> Any:
    url = args.url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Accept": "application/json"}
    data = None
    if method != "GET":
        token = args.token or os.environ.get(TOKEN_ENV)
        if not token:
            raise _Usage(f"this command changes state: pass --token or set {TOKEN_ENV}")
        headers["Authorization"] = f"Bearer {token}"
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    elif args.token or os.environ.get(TOKEN_ENV):  # for collectors configured with reads_need_token
        headers["Authorization"] = f"Bearer {args.token or os.environ.get(TOKEN_ENV)}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            message = raw.decode("utf-8", "replace").strip() or exc.reason
        raise _Failed(f"{exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(f"cannot reach the collector at {args.url}: {reason}") from None


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _print(args: argparse.Namespace, answer: Any, text: str) -> None:
    print(json.dumps(answer, indent=2) if args.json else text)


def _describe(prompt: dict[str, Any]) -> str:
    reference = f" (rollback reference {prompt['rollback_to']})" if prompt.get("rollback_to") else ""
    return f"{prompt['name']} {prompt['version']}: {prompt['status']}{reference}"


# --- prompts ------------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> None:
    answer = _request(args, "GET", "/api/v1/prompts")
    rows = [["NAME", "VERSION", "DEPLOYED_AT", "DEPLOYED_BY", "CONTENT_HASH"]]
    rows += [
        [p["name"], p["version"], p["deployed_at"] or "", p["deployed_by"] or "", p["content_hash"][:12]]
        for p in answer["prompts"]
    ]
    _print(args, answer, _table(rows) if answer["prompts"] else "no active prompts")


def _versions(args: argparse.Namespace) -> None:
    answer = _request(args, "GET", "/api/v1/prompts/versions", query={"name": args.name})
    rows = [["VERSION", "STATUS", "CREATED_AT", "CREATED_BY", "ROLLBACK_TO", "CONTENT_HASH"]]
    rows += [
        [
            v["version"],
            v["status"],
            v["created_at"],
            v["created_by"],
            v["rollback_to"] or "",
            v["content_hash"][:12],
        ]
        for v in answer["versions"]
    ]
    _print(args, answer, _table(rows))


def _active(args: argparse.Namespace) -> None:
    answer = _request(args, "GET", "/api/v1/prompts/active", query={"name": args.name})
    _print(args, answer, f"{_describe(answer['prompt'])}\n\n{answer['prompt']['text']}")


def _register(args: argparse.Namespace) -> None:
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Usage(f"--file: cannot read {args.file}: {exc}") from None
    try:
        metadata = json.loads(args.metadata) if args.metadata else {}
    except ValueError:
        raise _Usage("--metadata: expected a JSON object") from None
    if not isinstance(metadata, dict):
        raise _Usage("--metadata: expected a JSON object")
    baselines: dict[str, float] = {}
    for item in args.baseline:
        key, sep, value = item.partition("=")
        if not sep or key not in BASELINE_KEYS:
            raise _Usage(
                f"--baseline: expected KEY=NUMBER with KEY one of {', '.join(sorted(BASELINE_KEYS))}"
            )
        try:
            baselines[key] = float(value)
        except ValueError:
            raise _Usage(f"--baseline {key}: expected a number, got {value!r}") from None
    body = {
        "name": args.name,
        "version": args.version,
        "text": text,
        "created_by": args.by,
        "metadata": metadata,
        "baselines": baselines,
        "auto_rollback": args.auto_rollback,
    }
    answer = _request(args, "POST", "/api/v1/prompts/register", body=body)
    _print(
        args,
        answer,
        f"registered {_describe(answer['prompt'])}, content hash {answer['prompt']['content_hash']}",
    )


def _deploy(args: argparse.Namespace) -> None:
    body = {"name": args.name, "version": args.version, "by": args.by, "reason": args.reason}
    answer = _request(args, "POST", "/api/v1/prompts/deploy", body=body)
    _print(args, answer, f"deployed {_describe(answer['prompt'])}")


def _promote(args: argparse.Namespace) -> None:
    body = {
        "name": args.name,
        "version": args.version,
        "by": args.by,
        "reason": args.reason,
        "allow_marginal": args.allow_marginal,
    }
    answer = _request(args, "POST", "/api/v1/prompts/promote", body=body)
    canary = answer["canary"]
    _print(
        args,
        answer,
        f"promoted {_describe(answer['prompt'])} on canary {canary['verdict']} (score {canary['score']:.0f})",
    )


def _rollback(args: argparse.Namespace) -> None:
    body = {"name": args.name, "by": args.by, "reason": args.reason}
    answer = _request(args, "POST", "/api/v1/prompts/rollback", body=body)
    _print(args, answer, f"rolled back to {_describe(answer['prompt'])}")


def _deprecate(args: argparse.Namespace) -> None:
    body = {"name": args.name, "version": args.version, "by": args.by, "reason": args.reason}
    answer = _request(args, "POST", "/api/v1/prompts/deprecate", body=body)
    _print(args, answer, f"deprecated {_describe(answer['prompt'])}")


def _audit(args: argparse.Namespace) -> None:
    answer = _request(args, "GET", "/api/v1/audit", query={"name": args.name} if args.name else None)
    rows = [["AT", "PROMPT", "VERSION", "ACTION", "BY", "REASON"]]
    rows += [
        [e["at"], e["name"], e["version"] or "", e["action"], e["by"], e["reason"]] for e in answer["audit"]
    ]
    _print(args, answer, _table(rows))


# --- switches -----------------------------------------------------------------------------------------
def _switch_list(args: argparse.Namespace) -> None:
    answer = _request(args, "GET", "/api/v1/switches")
    rows = [["SERVICE", "FEATURE", "KIND", "ENABLED", "VALUE", "SET_AT", "SET_BY"]]
    rows += [
        [
            s["service"],
            s["feature"],
            s["kind"],
            "yes" if s["enabled"] else "no",
            "" if s["value"] is None else json.dumps(s["value"]),
            s["set_at"],
            s["set_by"],
        ]
        for s in answer["switches"]
    ]
    _print(args, answer, _table(rows) if answer["switches"] else "no switches")


def _switch_set(args: argparse.Namespace) -> None:
    value: Any = None
    if args.kind == "downgrade_model":
        if not (args.from_model and args.to_model) or args.value is not None:
            raise _Usage("downgrade_model needs --from MODEL and --to MODEL")
        value = {"from": args.from_model, "to": args.to_model}
    elif args.kind == "static_response":
        if args.value is None or args.from_model or args.to_model:
            raise _Usage("static_response needs --value TEXT")
        value = args.value
    elif args.value is not None or args.from_model or args.to_model:
        raise _Usage(f"{args.kind} takes no --value, --from or --to")
    body = {
        "service": args.service,
        "feature": args.feature,
        "kind": args.kind,
        "value": value,
        "enabled": True,
        "by": args.by,
        "reason": args.reason,
    }
    answer = _request(args, "POST", "/api/v1/switches", body=body)
    switch = answer["switch"]
    _print(args, answer, f"switch on: {switch['service']} {switch['feature']} {switch['kind']}")


def _switch_clear(args: argparse.Namespace) -> None:
    body = {
        "service": args.service,
        "feature": args.feature,
        "kind": args.kind,
        "enabled": False,
        "by": args.by,
        "reason": args.reason,
    }
    answer = _request(args, "POST", "/api/v1/switches", body=body)
    switch = answer["switch"]
    _print(args, answer, f"switch off: {switch['service']} {switch['feature']} {switch['kind']}")


def _runner(action: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    """Wrap an action so that the namespace's ``run`` returns an exit code and never a traceback."""

    def run(args: argparse.Namespace) -> int:
        command = f"otel-llm {args.group} {args.group_command}"
        try:
            action(args)
        except _Usage as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return USAGE_ERROR
        except _Failed as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return FAILED
        return OK

    return run


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help=f"collector HTTP address (default {DEFAULT_URL})")
    common.add_argument("--token", help=f"API bearer token (default: ${TOKEN_ENV})")
    common.add_argument(
        "--by", default=_default_user(), help="who the audit log records (default: login name)"
    )
    common.add_argument("--json", action="store_true", help="print the server's JSON answer")
    return common


def add_parser(subparsers: Any) -> None:
    """Register ``prompts`` and ``switches`` on an argparse subparsers object."""
    common = _common()

    prompts = subparsers.add_parser("prompts", help="the prompt registry", description="The prompt registry.")
    prompts.set_defaults(group="prompts")
    commands = prompts.add_subparsers(dest="group_command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, action: Callable[[argparse.Namespace], None]
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, parents=[common])
        parser.set_defaults(run=_runner(action))
        return parser

    command("list", "active version of every prompt", _list)
    command("versions", "all versions of a prompt", _versions).add_argument("name")
    command("active", "the active version of a prompt, with its text", _active).add_argument("name")
    register = command("register", "register a new version (draft)", _register)
    register.add_argument("name")
    register.add_argument("version", help="semantic version, e.g. 1.2.0")
    register.add_argument("--file", type=Path, required=True, help="the prompt text (UTF-8)")
    register.add_argument("--metadata", help="JSON object: exploration path, techniques, ...")
    register.add_argument("--baseline", action="append", default=[], metavar="KEY=NUMBER")
    register.add_argument("--auto-rollback", action="store_true", help="allow automatic rollback")
    deploy = command("deploy", "make a version active", _deploy)
    deploy.add_argument("name")
    deploy.add_argument("version")
    deploy.add_argument("--reason", default="")
    promote = command("promote", "deploy a version if the canary analysis passes it", _promote)
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--reason", default="")
    promote.add_argument("--allow-marginal", action="store_true", help="accept a marginal canary verdict")
    rollback = command("rollback", "go back to the version active before", _rollback)
    rollback.add_argument("name")
    rollback.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    deprecate = command("deprecate", "retire a version", _deprecate)
    deprecate.add_argument("name")
    deprecate.add_argument("version")
    deprecate.add_argument("--reason", default="")
    command("audit", "the audit log", _audit).add_argument("name", nargs="?")

    switches = subparsers.add_parser("switches", help="kill switches", description="Kill switches.")
    switches.set_defaults(group="switches")
    switch_commands = switches.add_subparsers(dest="group_command", metavar="COMMAND", required=True)
    listing = switch_commands.add_parser("list", help="every switch", parents=[common])
    listing.set_defaults(run=_runner(_switch_list))
    for name, help_text, action in (
        ("set", "switch on", _switch_set),
        ("clear", "switch off", _switch_clear),
    ):
        parser = switch_commands.add_parser(name, help=help_text, parents=[common])
        parser.set_defaults(run=_runner(action))
        parser.add_argument("service")
        parser.add_argument("feature", help='feature name, or "*" for all')
        parser.add_argument("kind", choices=KINDS)
        parser.add_argument("--reason", default="")
        if name == "set":
            parser.add_argument("--value", help="static_response: the response text")
            parser.add_argument("--from", dest="from_model", help="downgrade_model: the model to replace")
            parser.add_argument("--to", dest="to_model", help="downgrade_model: the model to use instead")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-llm")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
