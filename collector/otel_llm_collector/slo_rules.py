"""The SLOs of an SLO file as Prometheus recording and alerting rules, for teams that alert from Prometheus,
and as Grafana alerting provisioning, for teams that alert from Grafana.

    text = render_prometheus_rules(load_slos("slos.yaml"), source="slos.yaml", output="slo-rules.yaml")
    text = render_grafana_rules(load_slos("slos.yaml"), source="slos.yaml", output="alerting-slo.yaml")

or from a terminal: ``otel-llm slo render-rules --slo-file slos.yaml [--format grafana] --output FILE``.

Per SLO, one rule group records the `slo:sli_error:ratio_rate<window>` family (5m, 30m, 1h, 6h, 1d, 3d;
label `slo`), `slo:objective:ratio`, `slo:error_budget:ratio` and `slo:time_period:days`, and alerts with
the collector's own burn-rate table (`slo.BURN_RATE_ALERTS`): `alertname=SLOBurnRate`, labels `slo` and
`severity`, as the collector's SLO alerts, so one Alertmanager routing tree serves both.

Where the ratios come from (the generated header says the same to whoever reads the rule file):

- availability: the window gauges, errors = `otel_llm_window_error_ratio` x `otel_llm_window_calls`
  summed over the SLO's series, over the summed calls;
- quality: `otel_llm_window_eval_fail_ratio` x `otel_llm_window_eval_samples` of the SLO's evaluation,
  i.e. results labelled `fail`. The collector judges a scored result by `score >= threshold` instead; the
  two agree when the evaluator labels `fail` exactly the scores under the threshold;
- latency: the window metrics hold quantiles, not the share of calls under a threshold, so the rules read
  the collector's own `otel_llm_slo_burn_rate` gauge (exact, but only when the collector loads the same
  SLO file).

Grafana (`render_grafana_rules`): one provisioning group `otel-llm-slo` with the same alerts (labels,
annotations and thresholds as above; every rule titled `SLOBurnRate`, Grafana's alertname, which needs
Grafana 12.0 or later: earlier versions allow a title once per folder) whose queries hold the recording
rules' expressions inline, since Grafana cannot rely on those rules being loaded. Both renderings
build the ratios (`_ratio_expr`) and the pairs (`_alert_expr`) with the same functions; the inline 30m, 6h
and 3d ratios are subqueries at the rule group's 1m interval, the figures the recording rules record.

Output is deterministic: SLOs in file order, rules in a fixed order, numbers in their shortest form.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import textwrap
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Final, NamedTuple

from otel_llm_collector.slo import (
    _REL_TOLERANCE,  # the tracker's tolerance: exactly 14.4x fires in both places
    BURN_RATE_ALERTS,
    BURN_WINDOWS,
    SLO_ALERTNAME,
    BurnRateAlert,
    SloSet,
    SloSpec,
)

__all__ = [
    "RATIO_WINDOWS",
    "SCOPE_LABELS",
    "escape_promql_string",
    "render_grafana_rules",
    "render_prometheus_rules",
    "scope_selector",
]

RATIO_WINDOWS: Final = ("5m", "30m", "1h", "6h", "1d", "3d")
"""The recorded `slo:sli_error:ratio_rate<window>` windows (the alerts use a subset)."""
SCOPE_LABELS: Final = ("service", "feature", "prompt_name", "model")
"""SLO scope fields, which are also the window metrics' label names."""

_RUNBOOKS: Final = {"availability": "docs/runbooks/error-rate.md", "latency": "docs/runbooks/latency.md"}
_QUALITY_RUNBOOKS: Final = {
    name: f"docs/runbooks/{name}.md" for name in ("faithfulness", "hallucination", "toxicity")
}
_FALLBACK_RUNBOOK: Final = "docs/rules.md#slo-burn-rate-rules-for-prometheus"
_GROUP_INTERVAL: Final = "1m"
"""As the collector's event-time minute ticks."""

# Ratio window -> the collector window gauge it reads directly, or the recorded window series summed over it.
_DIRECT: Final = {"5m": "5m", "1h": "1h", "1d": "24h"}
_SUMMED_FROM: Final = {"30m": "5m", "6h": "5m", "3d": "1h"}
_SIMPLE_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TOLERANCE_FACTOR: Final = repr(1.0 - _REL_TOLERANCE)
_LINE_BREAKS: Final = frozenset("\x85\u2028\u2029")
_PLAIN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.:/()-]*")
_YAML_WORDS: Final = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])
_VALUE: Final = "\x00value\x00"
"""Placeholder for the firing value in a summary: a character no SLO name or number holds."""
_PROMETHEUS_VALUE: Final = '{{ printf "%.3g" $value }}'
_GOOD: Final = {
    "availability": "a call without error.type",
    "quality": "an evaluation result not labelled fail",
    "latency": "a successful call within {threshold}s",
}


def escape_promql_string(value: str) -> str:
    """The body of a double-quoted PromQL string (without the quotes) holding exactly `value`.

    Backslash, quote, line feed, carriage return and tab get their escapes; other non-printable characters
    (and the Unicode line separators, which YAML would take as line breaks) become ``\\uXXXX``, so the
    result is one printable line that is safe in a YAML block scalar and a comment.
    """
    out: list[str] = []
    for char in value:
        if char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        elif char.isprintable() and char not in _LINE_BREAKS:
            out.append(char)
        else:
            code = ord(char)
            if 0xD800 <= code <= 0xDFFF:  # a lone surrogate cannot be a Prometheus label value
                code = 0xFFFD
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


def scope_selector(spec: SloSpec, **extra: str) -> str:
    """`{service="...",...}` for the SLO's scope, then `extra` matchers; `{}` for an unscoped SLO."""
    pairs = [(label, getattr(spec, label)) for label in SCOPE_LABELS if getattr(spec, label) is not None]
    pairs += extra.items()
    return "{" + ",".join(f'{label}="{escape_promql_string(value)}"' for label, value in pairs) + "}"


# --- numbers and YAML scalars -----------------------------------------------------------------------------
def _number(value: float | Decimal) -> str:
    """Shortest plain decimal: 0.99, 6, 0.0001 (never 1E-4, never 6.0)."""
    text = format(Decimal(repr(value)) if isinstance(value, float) else value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _budget(spec: SloSpec) -> str:
    """1 - objective in decimal, so 0.99 gives 0.01 and not 0.010000000000000009."""
    return _number(Decimal(1) - Decimal(repr(spec.objective)))


def _objective_percent(spec: SloSpec) -> str:
    """99.99%, not the 100% that three significant digits would print."""
    return _number(Decimal(repr(spec.objective)) * 100) + "%"


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def _scalar(text: str) -> str:
    """A YAML scalar for `text`: plain when unambiguous, else double-quoted with YAML escapes."""
    if _PLAIN.fullmatch(text) and not text.endswith(":") and text.lower() not in _YAML_WORDS:
        return text
    out: list[str] = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char.isprintable() and char not in _LINE_BREAKS and char != "\ufeff":
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    return escape_promql_string(text).replace('\\"', '"')


# --- rules ----------------------------------------------------------------------------------------------
class _Rule:
    """One rule as ordered YAML lines (`record`/`alert`, `expr`, `labels`, `annotations`)."""

    def __init__(
        self,
        *,
        record: str = "",
        alert: str = "",
        expr: str,
        labels: Sequence[tuple[str, str]] = (),
        annotations: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.head = ("record", record) if record else ("alert", alert)
        self.expr = expr
        self.labels = labels
        self.annotations = annotations

    def lines(self) -> list[str]:
        key, name = self.head
        lines = [f"      - {key}: {_scalar(name)}"]
        if "\n" in self.expr or not _PLAIN.fullmatch(self.expr):
            lines.append("        expr: |")
            lines += [f"          {line}".rstrip() for line in self.expr.splitlines()]
        else:
            lines.append(f"        expr: {self.expr}")
        for title, pairs in (("labels", self.labels), ("annotations", self.annotations)):
            if pairs:
                lines.append(f"        {title}:")
                lines += [f"          {k}: {_scalar(v)}" for k, v in pairs]
        return lines


def _recorded(name: str, spec: SloSpec) -> str:
    return f'{name}{{slo="{escape_promql_string(spec.name)}"}}'


def _window_inputs(spec: SloSpec, window: str) -> tuple[str, str]:
    """(bad events, all events) in one collector window, summed over the SLO's series."""
    if spec.kind == "availability":
        selector = scope_selector(spec, window=window)
        bad_ratio, total = "otel_llm_window_error_ratio", "otel_llm_window_calls"
    else:
        selector = scope_selector(spec, evaluation=spec.evaluation or "", window=window)
        bad_ratio, total = "otel_llm_window_eval_fail_ratio", "otel_llm_window_eval_samples"
    bad = f"sum(\n    {bad_ratio}{selector}\n  * {total}{selector}\n)"
    return bad, f"sum({total}{selector})"


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def _ratio_expr(spec: SloSpec, window: str, *, inline: bool) -> str:
    """The error ratio over `window` (one of `RATIO_WINDOWS`): the expression of its recording rule, or with
    `inline` one that reads only the collector's metrics (the recorded window sums become subqueries at the
    rule group's interval, so both sum the same once-a-minute figures)."""
    if spec.kind == "latency":
        return (
            f'max by (slo) (otel_llm_slo_burn_rate{{slo="{escape_promql_string(spec.name)}",'
            f'window="{window}"}}) * {_budget(spec)}'
        )
    if window in _SUMMED_FROM:
        source = _SUMMED_FROM[window]
        if not inline:
            return (
                f"sum_over_time({_recorded(f'slo:sli_errors:window{source}', spec)}[{window}])\n"
                f"  / sum_over_time({_recorded(f'slo:sli_events:window{source}', spec)}[{window}])"
            )
        bad, total = _window_inputs(spec, source)
        return "\n/\n".join(
            f"sum_over_time(\n{_indent(figure, 2)}[{window}:{_GROUP_INTERVAL}]\n)" for figure in (bad, total)
        )
    source = _DIRECT[window]
    if not inline and source in _SUMMED_FROM.values():
        return (
            f"{_recorded(f'slo:sli_errors:window{source}', spec)}\n"
            f"  / {_recorded(f'slo:sli_events:window{source}', spec)}"
        )
    bad, total = _window_inputs(spec, source)
    return f"{bad}\n/\n{total}"


def _ratio_rules(spec: SloSpec) -> list[_Rule]:
    """The `slo:sli_error:ratio_rate*` family (and the 5m/1h window sums it is built from)."""
    slo = [("slo", spec.name)]
    rules: list[_Rule] = []
    windows = [w for w in RATIO_WINDOWS if spec.kind != "latency" or w in BURN_WINDOWS]
    if spec.kind != "latency":
        for window in sorted(set(_SUMMED_FROM.values()), key=RATIO_WINDOWS.index):
            bad, total = _window_inputs(spec, window)
            rules.append(_Rule(record=f"slo:sli_errors:window{window}", expr=bad, labels=slo))
            rules.append(_Rule(record=f"slo:sli_events:window{window}", expr=total, labels=slo))
    for window in windows:
        expr = _ratio_expr(spec, window, inline=False)
        rules.append(_Rule(record=f"slo:sli_error:ratio_rate{window}", expr=expr, labels=slo))
    return rules


def _pair_text(rows: Iterable[BurnRateAlert]) -> str:
    return ", or ".join(f"{row.rate:g}x over {row.long_window} and {row.short_window}" for row in rows)


class _BurnAlert(NamedTuple):
    """One alert of an SLO (a severity of the burn-rate table), whatever renders it."""

    severity: str
    rows: tuple[BurnRateAlert, ...]
    summary: str
    """With `_VALUE` where the alerting system's template of the firing value goes."""
    description: str
    runbook_url: str


def _burn_alerts(spec: SloSpec) -> list[_BurnAlert]:
    period_minutes = spec.period_seconds / 60
    good = _GOOD[spec.kind].format(threshold=_number(spec.threshold_seconds or 0.0))
    if spec.kind == "quality":
        runbook = _QUALITY_RUNBOOKS.get(spec.evaluation or "", _FALLBACK_RUNBOOK)
    else:
        runbook = _RUNBOOKS[spec.kind]
    alerts: list[_BurnAlert] = []
    for severity in dict.fromkeys(row.severity for row in BURN_RATE_ALERTS):
        rows = tuple(row for row in BURN_RATE_ALERTS if row.severity == severity)
        spent = [
            f"the {row.long_window} and {row.short_window} burn rates are {row.rate:g}x or more "
            f"({_percent(row.rate * BURN_WINDOWS[row.long_window] / period_minutes)} of the {spec.period} "
            f"budget in {row.long_window})"
            for row in rows
        ]
        kind = rows[0].kind
        summary = f"SLO {spec.name} burns its error budget at {_VALUE}x ({kind}: {_pair_text(rows)})"
        description = (
            f"{kind.capitalize()}: {', or '.join(spent)}. Objective {_objective_percent(spec)} good over "
            f"{spec.period}; good: {good}."
        )
        alerts.append(_BurnAlert(severity, rows, summary, description, runbook))
    return alerts


def _burn_condition(ratio: str, budget: str, rate: float) -> list[str]:
    """`ratio / budget >= rate`, a multi-line ratio in parentheses (4 spaces in)."""
    compare = f" / {budget} >= {_number(rate)} * {_TOLERANCE_FACTOR}"
    if "\n" not in ratio:
        return [f"    {ratio}{compare}"]
    return ["    (", _indent(ratio, 6), f"    ){compare}"]


def _alert_expr(spec: SloSpec, rows: Sequence[BurnRateAlert], ratio: Callable[[str], str]) -> str:
    """The pairs of `rows` (long and short window at or above the rate), or-ed; `ratio(window)` gives the
    error ratio of a window. The value is the long window's burn rate of the first pair that holds."""
    budget = _budget(spec)
    pairs = [
        "\n".join(
            [
                "(",
                *_burn_condition(ratio(row.long_window), budget, row.rate),
                "  and",
                *_burn_condition(ratio(row.short_window), budget, row.rate),
                ")",
            ]
        )
        for row in rows
    ]
    return "\nor\n".join(pairs)


def _alert_rules(spec: SloSpec) -> list[_Rule]:
    def recorded(window: str) -> str:
        return _recorded(f"slo:sli_error:ratio_rate{window}", spec)

    return [
        _Rule(
            alert=SLO_ALERTNAME,
            expr=_alert_expr(spec, alert.rows, recorded),
            labels=[("slo", spec.name), ("severity", alert.severity)],
            annotations=[
                ("summary", alert.summary.replace(_VALUE, _PROMETHEUS_VALUE)),
                ("description", alert.description),
                ("runbook_url", alert.runbook_url),
            ],
        )
        for alert in _burn_alerts(spec)
    ]


def _meta_rules(spec: SloSpec) -> list[_Rule]:
    slo = [("slo", spec.name)]
    return [
        _Rule(record="slo:objective:ratio", expr=f"vector({_number(spec.objective)})", labels=slo),
        _Rule(record="slo:error_budget:ratio", expr=f"vector({_budget(spec)})", labels=slo),
        _Rule(
            record="slo:time_period:days",
            expr=f"vector({_number(Decimal(spec.period_seconds) / 86400)})",
            labels=slo,
        ),
    ]


def _group_comment(spec: SloSpec) -> list[str]:
    scope = scope_selector(spec)
    lines = [
        f"SLO {spec.name}: {spec.kind}, objective {_number(spec.objective)} over {spec.period} "
        f"(error budget {_budget(spec)}); scope {scope if scope != '{}' else 'every series'}.",
    ]
    if spec.description:
        lines.append(_comment(spec.description))
    if spec.kind == "quality":
        lines.append(
            f'Bad: results of evaluation "{escape_promql_string(spec.evaluation or "")}" labelled fail; the '
            f"collector judges scored results by score >= {_number(spec.threshold)}."
        )
    if spec.kind == "latency":
        lines.append(
            f"Bad: successful calls slower than {_number(spec.threshold_seconds or 0.0)}s, read from the "
            "collector's otel_llm_slo_burn_rate: the collector must load this SLO file; no 1d ratio."
        )
    wrapped = (
        textwrap.wrap(line, width=104, break_long_words=False, break_on_hyphens=False) for line in lines
    )
    return [f"  # {part}" for parts in wrapped for part in parts]


_HEADER: Final = """\
Prometheus rules for the SLOs in {source}, generated by
  {command}
Do not edit: change the SLO file and run the command again.

The collector's SLO tracker (collector/otel_llm_collector/slo.py) as recording and alerting rules, for
teams that alert from Prometheus. Names follow the widely used `slo:sli_error:ratio_rate<window>`
family (one series per SLO, label `slo`), plus `slo:objective:ratio`, `slo:error_budget:ratio` and
`slo:time_period:days`, so existing SLO dashboards read them unchanged. One rule group per SLO.

Source metrics. The collector exports a monotonic `otel_llm_calls_total` but no errors counter, so
the error ratios are computed from its window gauges instead: bad events in a window = the window's
ratio x its count, summed over the SLO's series and divided by the summed count.
  - availability: otel_llm_window_error_ratio x otel_llm_window_calls.
  - quality: otel_llm_window_eval_fail_ratio x otel_llm_window_eval_samples of the SLO's evaluation,
    i.e. the results labelled `fail`. The collector judges a scored result by `score >= threshold`
    (the window metrics export only the mean score): both count the same results when the evaluator
    labels `fail` exactly the scores under the SLO's threshold (user_feedback at any threshold, the
    groundedness evaluator at 0.8) or sends labels only.
  - 5m, 1h, 1d: the collector's own 5m, 1h and 24h windows (exact).
  - 30m and 6h: sums over time of the 5m window figures; 3d: of the 1h window figures. Overlapping
    windows sampled at every evaluation weigh the edges less: a 30m ratio is the traffic of the last
    ~35 minutes with the oldest and newest 5 minutes weighed down, close to the collector's own 30m
    window.
  - latency: the window metrics hold latency quantiles, not the share of calls under a threshold, so
    these rules read the collector's own burn rates, otel_llm_slo_burn_rate{{slo, window}} x the error
    budget (the highest of several collectors). The collector must load the same SLO file
    (`slo_file:`), else the series are absent and the alerts never fire. The collector keeps no 1d
    burn rate, so latency SLOs have no `slo:sli_error:ratio_rate1d`.

Alerts (the multiwindow, multi-burn-rate table; burn rate = error ratio / (1 - objective)):

  severity     long  short  burn rate  budget spent when it fires (30d period)
{table}

`alertname: {alertname}` with labels `slo` and `severity`, as the collector's own SLO alerts, so one
Alertmanager routing tree serves both. No `for`: the short window already makes the alert reset fast.
Thresholds are multiplied by {tolerance}, the collector's relative tolerance, so that exactly the
table's rate fires in both. Check: `promtool check rules FILE`.
"""


def _table() -> str:
    return "\n".join(
        f"  {f'{row.severity} ({row.kind})':<12} {row.long_window:<5} {row.short_window:<6} {row.rate:<10g} "
        f"{_percent(row.rate * BURN_WINDOWS[row.long_window] / (30 * 1440))} in {row.long_window}"
        for row in BURN_RATE_ALERTS
    )


def _header(source: str, output: str | None) -> list[str]:
    command = f"otel-llm slo render-rules --slo-file {shlex.quote(source)}"
    if output is not None:
        command += f" --output {shlex.quote(output)}"
    text = _HEADER.format(
        source=_comment(source),
        command=_comment(command),
        table=_table(),
        alertname=SLO_ALERTNAME,
        tolerance=_TOLERANCE_FACTOR,
    )
    return [f"# {line}".rstrip() for line in text.splitlines()]


def render_prometheus_rules(
    slos: SloSet | Sequence[SloSpec], *, source: str = "slos.yaml", output: str | None = None
) -> str:
    """A Prometheus rule file (YAML text) for `slos`; `source` and `output` only name them in the header."""
    specs = tuple(slos.slos if isinstance(slos, SloSet) else slos)
    lines = _header(source, output)
    if not specs:
        return "\n".join([*lines, "groups: []"]) + "\n"
    lines.append("groups:")
    for index, spec in enumerate(specs):
        if index:
            lines.append("")
        lines += _group_comment(spec)
        lines += [
            f"  - name: {_scalar(f'otel-llm-slo-{spec.name}')}",
            f"    interval: {_GROUP_INTERVAL}",
            "    rules:",
        ]
        for rule in (*_meta_rules(spec), *_ratio_rules(spec), *_alert_rules(spec)):
            lines += rule.lines()
    return "\n".join(lines) + "\n"


# --- Grafana alerting -----------------------------------------------------------------------------------
_GRAFANA_DATASOURCE: Final = "otel-llm-prometheus"
"""The Prometheus data source uid of grafana/provisioning/datasources/prometheus.yaml."""
_GRAFANA_FOLDER: Final = "otel-llm"
_GRAFANA_GROUP: Final = "otel-llm-slo"
_GRAFANA_VALUE: Final = '{{ printf "%.3g" $values.B.Value }}'
_GRAFANA_UID: Final = re.compile(r"[A-Za-z0-9_-]+")
_GRAFANA_UID_MAX: Final = 40
_GRAFANA_UID_PREFIX: Final = "otel-llm-slo-"


def _grafana_uid(spec: SloSpec, severity: str) -> str:
    """`otel-llm-slo-<name>-p1`, stable across renderings; Grafana allows 40 of [A-Za-z0-9_-], so a longer
    name or one with `.` or `:` keeps a cleaned prefix and gains a digest of the whole name."""
    suffix = f"-{severity.lower()}"
    uid = f"{_GRAFANA_UID_PREFIX}{spec.name}{suffix}"
    if _GRAFANA_UID.fullmatch(uid) and len(uid) <= _GRAFANA_UID_MAX:
        return uid
    digest = "-" + hashlib.sha256(spec.name.encode()).hexdigest()[:8]
    keep = _GRAFANA_UID_MAX - len(_GRAFANA_UID_PREFIX) - len(digest) - len(suffix)
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", spec.name)[:keep]
    return f"{_GRAFANA_UID_PREFIX}{cleaned}{digest}{suffix}"


def _grafana_rule(spec: SloSpec, alert: _BurnAlert) -> list[str]:
    def inline(window: str) -> str:
        ratio = _ratio_expr(spec, window, inline=True)
        return ratio if "\n" in ratio else f"({ratio})"  # multi-line ratios get their parentheses below

    expr = _alert_expr(spec, alert.rows, inline)
    annotations = (
        ("summary", alert.summary.replace(_VALUE, _GRAFANA_VALUE)),
        ("description", alert.description),
        ("runbook_url", alert.runbook_url),
    )
    return [
        f"  - uid: {_grafana_uid(spec, alert.severity)}",
        f"    title: {_scalar(SLO_ALERTNAME)}",
        "    condition: C",
        "    data:",
        "    - refId: A",
        "      relativeTimeRange:",
        "        from: 600",
        "        to: 0",
        f"      datasourceUid: {_GRAFANA_DATASOURCE}",
        "      model:",
        "        refId: A",
        "        expr: |",
        _indent(expr, 10),
        "        instant: true",
        "        range: false",
        "        intervalMs: 60000",
        "        maxDataPoints: 43200",
        "        editorMode: code",
        "    - refId: B",
        "      datasourceUid: __expr__",
        "      model:",
        "        refId: B",
        "        type: reduce",
        "        expression: A",
        "        reducer: last",
        "        settings:",
        "          mode: dropNN",
        "    - refId: C",
        "      datasourceUid: __expr__",
        "      model:",
        "        refId: C",
        "        type: threshold",
        "        expression: B",
        "        conditions:",
        "        - evaluator:",
        "            type: gt",
        "            params:",
        "            - 0",
        "    noDataState: OK",
        "    execErrState: Error",
        "    for: 0s",
        "    labels:",
        f"      slo: {_scalar(spec.name)}",
        f"      severity: {_scalar(alert.severity)}",
        "    annotations:",
        *(f"      {key}: {_scalar(value)}" for key, value in annotations),
        "    isPaused: false",
    ]


_GRAFANA_HEADER: Final = """\
Grafana alerting provisioning for the SLOs in {source}, generated by
  {command}
Do not edit: change the SLO file and run the command again.

The SLO burn-rate alerts of the Prometheus rules rendered from the same file (`otel-llm slo render-rules`
without --format), for teams that alert from Grafana: copy to Grafana's provisioning/alerting/ directory.
One group `{group}` in folder `{folder}`, evaluated every {interval}; per SLO a page (P1) and a ticket (P3)
rule. Needs Grafana 12.0 or later: every rule is titled `{alertname}`, which Grafana uses as the
`alertname` label, and earlier versions reject two rules with one title in a folder.

Query A (Prometheus data source uid `{datasource}`) is the Prometheus alert's expression with its
recording rules written out inline, as Grafana cannot rely on them being loaded: the same arithmetic from
the same window gauges. Bad events in a window = the window's ratio x its count, summed over the SLO's
series, over the summed count (availability: otel_llm_window_error_ratio x otel_llm_window_calls;
quality: otel_llm_window_eval_fail_ratio x otel_llm_window_eval_samples of the SLO's evaluation, i.e. the
results labelled `fail`, where the collector judges a scored result by `score >= threshold`). 5m and 1h
are the collector's own windows; 30m and 6h sum the 5m window figures, 3d the 1h ones, through subqueries
at the group's {interval} step (the figures the recording rules would have recorded once a minute; the 3d
subquery evaluates 4,320 steps at every evaluation). Latency SLOs read the collector's own
otel_llm_slo_burn_rate: the collector must load the same SLO file (`slo_file:`), else they never fire.

A returns the long window's burn rate where a pair of the table holds and nothing otherwise, B takes its
last value, C fires on any value. No data (no traffic, or no pair holds) is OK, never a page.

  severity     long  short  burn rate  budget spent when it fires (30d period)
{table}

Labels `slo` and `severity` (and the title as `alertname`), as the collector's own SLO alerts and the
Prometheus rules, so one Alertmanager routing tree serves all three. `for: 0s`: the short window already
makes the alert reset fast. Thresholds are multiplied by {tolerance}, the collector's relative tolerance,
so that exactly the table's rate fires everywhere.
"""


def _grafana_header(source: str, output: str | None) -> list[str]:
    command = f"otel-llm slo render-rules --format grafana --slo-file {shlex.quote(source)}"
    if output is not None:
        command += f" --output {shlex.quote(output)}"
    text = _GRAFANA_HEADER.format(
        source=_comment(source),
        command=_comment(command),
        group=_GRAFANA_GROUP,
        folder=_GRAFANA_FOLDER,
        interval=_GROUP_INTERVAL,
        alertname=SLO_ALERTNAME,
        datasource=_GRAFANA_DATASOURCE,
        table=_table(),
        tolerance=_TOLERANCE_FACTOR,
    )
    return [f"# {line}".rstrip() for line in text.splitlines()]


def render_grafana_rules(
    slos: SloSet | Sequence[SloSpec], *, source: str = "slos.yaml", output: str | None = None
) -> str:
    """A Grafana alerting provisioning file (YAML text) with the burn-rate alerts of `slos`, their
    expressions inline (no recording rules needed); `source` and `output` only name them in the header."""
    specs = tuple(slos.slos if isinstance(slos, SloSet) else slos)
    lines = [*_grafana_header(source, output), "apiVersion: 1"]
    if not specs:
        return "\n".join([*lines, "groups: []"]) + "\n"
    lines += [
        "groups:",
        "- orgId: 1",
        f"  name: {_GRAFANA_GROUP}",
        f"  folder: {_GRAFANA_FOLDER}",
        f"  interval: {_GROUP_INTERVAL}",
        "  rules:",
    ]
    for spec in specs:
        for alert in _burn_alerts(spec):
            lines += _grafana_rule(spec, alert)
    return "\n".join(lines) + "\n"
