"""Output signals: what shape and script the model answered in, as evaluations the collector can watch.

    otel_llm.enable_evaluation([output_format, output_script])  # or OTEL_LLM_EVALUATORS=output_format,...

Two cheap local evaluators (microseconds for a typical answer, no network, no dependency). Neither grades
an answer: each puts it in a category, and the collector's output drift check (`OutputDrift`, see
`docs/rules.md`) compares this hour's mix of categories with the day before. A structured-output feature
whose share of valid JSON falls from 97% to 60%, or a support bot that starts answering Russian questions
in English, shows there as a changed mix.

`output_format` -> evaluation `output_format`, by label:

| label | the answer | score |
|---|---|---|
| `json` | parses as a JSON object or array, bare or in a code fence | 1.0 |
| `invalid_json` | looks like JSON (starts with `{`, `[` or a JSON fence) but does not parse as one | 0.0 |
| `text` | anything else | none |

The score is of the "higher is better" kind, and only for answers that try to be JSON:
`eval_mean{output_format}` is the share of JSON-looking answers that parse. An answer in prose where JSON
was due ("Here is the JSON: ...") is `text`, not `invalid_json`: a rule on the mean does not see it, the
drift check on the label mix does. A code fence counts as JSON when it opens the answer with the tag
`json`, or with no tag around something that starts with `{` or `[`; it must close at the end of the
answer (a fenced object followed by "Hope this helps!" is `invalid_json`, as a strict parser would have
it); any other fence is `text`.

    Blind spots: prose that opens with a bracket ("[1] See the manual", a Markdown link) is
    `invalid_json`; JSON Lines, YAML and XML are `text`; whether the JSON has the fields a schema asks for
    is not checked.

`output_script` -> evaluation `output_script`, a label without a score: the script most of the answer's
letters are written in, one of `latin`, `cyrillic`, `greek`, `arabic`, `hebrew`, `cjk` (Han, Hiragana and
Katakana), `hangul`, `devanagari`, `other` (a script not listed), or `none` (no letters at all: numbers,
symbols, emoji). Letters are what `str.isalpha()` says, scripts come from Unicode block ranges, and a Han,
kana or Hangul character weighs as much as three alphabetic letters (it carries a syllable or a morpheme),
so a Chinese answer that names `requests` and `Python` stays `cjk`. At most the first `max_chars` (4,000)
characters are read; the explanation gives the winning share of the weighted letters.

    Blind spots: a script is not a language. English and German are both `latin`, so this catches answers
    in the wrong alphabet (a Russian user answered in English), not in the wrong language of the same
    alphabet. An answer that is mostly code is judged by its identifiers (`latin`).

Both skip failed calls and empty answers (nothing is recorded), and neither copies answer text into the
explanation. They run at the worker's sample rate, like the other local evaluators.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Final

from otel_llm.evaluators import EvaluationInput, EvaluationOutcome

__all__ = [
    "SCRIPTS",
    "OutputFormat",
    "OutputScript",
    "format_of",
    "output_format",
    "output_script",
    "script_of",
]

# --- output_format --------------------------------------------------------------------------------------

_FENCE: Final = re.compile(r"\A```[^\n]*\n(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)
_LOOKS_LIKE_JSON: Final = ("{", "[")


def format_of(text: str) -> tuple[str, str]:
    """(`json` | `invalid_json` | `text`, why): the output format of an answer (see the module docstring)."""
    body = text.strip()
    where = "bare"
    if body.startswith("```"):
        first_line, _, rest = body.partition("\n")
        tag = first_line[3:].strip().lower()
        if tag not in ("", "json"):
            return "text", "a code fence of another language"
        if tag == "" and not rest.lstrip().startswith(_LOOKS_LIKE_JSON):
            return "text", "a code fence without JSON"
        fence = _FENCE.match(body)
        if fence is None:
            return "invalid_json", "a JSON code fence that does not close at the end of the answer"
        body = fence.group(1).strip()
        where = "in a code fence"
    elif not body.startswith(_LOOKS_LIKE_JSON):
        return "text", "does not start like JSON"
    try:
        value = json.loads(body)
    except ValueError as exc:
        # The message names a position only ("Expecting ',' delimiter: line 1 column 20 (char 19)").
        return "invalid_json", f"JSON {where} does not parse: {exc}"
    except RecursionError:
        return "invalid_json", f"JSON {where} is nested too deeply to parse"
    if not isinstance(value, dict | list):
        return "invalid_json", f"JSON {where} is a {type(value).__name__}, not an object or array"
    return "json", f"a JSON {'object' if isinstance(value, dict) else 'array'} {where}"


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """The `output_format` evaluator: `json` 1.0, `invalid_json` 0.0, `text` without a score."""

    name: str = "output_format"

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        if data.error_type or not data.response_text.strip():
            return None
        label, why = format_of(data.response_text)
        score = 1.0 if label == "json" else 0.0 if label == "invalid_json" else None
        return EvaluationOutcome(self.name, score, label, why)


# --- output_script --------------------------------------------------------------------------------------

SCRIPTS: Final = (
    "latin",
    "cyrillic",
    "greek",
    "arabic",
    "hebrew",
    "cjk",
    "hangul",
    "devanagari",
    "other",
    "none",
)
"""Every label `output_script` gives; ties between scripts go to the one listed first."""

# Unicode blocks of each script's letters (first, last code point), sorted; gaps are `other`.
_BLOCKS: Final = (
    (0x0041, 0x005A, "latin"),
    (0x0061, 0x007A, "latin"),
    (0x00AA, 0x00AA, "latin"),
    (0x00BA, 0x00BA, "latin"),
    (0x00C0, 0x024F, "latin"),
    (0x0250, 0x02AF, "latin"),  # IPA extensions
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0870, 0x08FF, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x1100, 0x11FF, "hangul"),
    (0x1C80, 0x1C8F, "cyrillic"),
    (0x1D00, 0x1D7F, "latin"),  # phonetic extensions
    (0x1E00, 0x1EFF, "latin"),
    (0x1F00, 0x1FFF, "greek"),
    (0x2C60, 0x2C7F, "latin"),
    (0x2DE0, 0x2DFF, "cyrillic"),
    (0x2E80, 0x2FDF, "cjk"),  # radicals
    (0x3005, 0x3007, "cjk"),  # iteration mark, closing mark, ideographic zero
    (0x3021, 0x3029, "cjk"),
    (0x3031, 0x3035, "cjk"),  # kana repeat marks
    (0x3038, 0x303C, "cjk"),
    (0x3040, 0x30FF, "cjk"),  # hiragana, katakana
    (0x3130, 0x318F, "hangul"),
    (0x31A0, 0x31BF, "cjk"),  # bopomofo extended
    (0x31F0, 0x31FF, "cjk"),
    (0x3400, 0x4DBF, "cjk"),
    (0x4E00, 0x9FFF, "cjk"),
    (0xA640, 0xA69F, "cyrillic"),
    (0xA720, 0xA7FF, "latin"),
    (0xA8E0, 0xA8FF, "devanagari"),
    (0xA960, 0xA97F, "hangul"),
    (0xAB30, 0xAB6F, "latin"),
    (0xAC00, 0xD7FF, "hangul"),  # syllables, jamo extended B
    (0xF900, 0xFAFF, "cjk"),
    (0xFB00, 0xFB06, "latin"),  # ligatures
    (0xFB1D, 0xFB4F, "hebrew"),
    (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
    (0xFF21, 0xFF3A, "latin"),  # fullwidth
    (0xFF41, 0xFF5A, "latin"),
    (0xFF66, 0xFF9F, "cjk"),  # halfwidth katakana
    (0xFFA0, 0xFFDC, "hangul"),  # halfwidth jamo
    (0x20000, 0x3134F, "cjk"),  # supplementary ideographs
)
_STARTS: Final = tuple(first for first, _, _ in _BLOCKS)
_WEIGHT: Final = {"cjk": 3, "hangul": 3}
"""Letters per character: an ideograph, kana or Hangul syllable carries about what three letters do."""
_RANK: Final = {script: rank for rank, script in enumerate(SCRIPTS)}


def _letter_script(char: str) -> str:
    code = ord(char)
    if code < 0x80:
        return "latin"
    i = bisect.bisect_right(_STARTS, code) - 1
    if i >= 0 and code <= _BLOCKS[i][1]:
        return _BLOCKS[i][2]
    return "other"


def script_of(text: str, *, max_chars: int = 4000) -> tuple[str, float, int]:
    """(script, its share of the weighted letters, letters counted) over the first `max_chars` characters.

    A letter is a character for which `str.isalpha()` holds; with none the script is `none`, share 0.0.
    """
    counts: Counter[str] = Counter()
    letters = 0
    for char in text[:max_chars]:
        if char.isalpha():
            letters += 1
            script = _letter_script(char)
            counts[script] += _WEIGHT.get(script, 1)
    if not letters:
        return "none", 0.0, 0
    script = min(counts, key=lambda s: (-counts[s], _RANK[s]))
    return script, counts[script] / sum(counts.values()), letters


@dataclass(frozen=True, slots=True)
class OutputScript:
    """The `output_script` evaluator: the dominant script of the answer's letters, as a label."""

    max_chars: int = 4000
    name: str = "output_script"

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        if data.error_type or not data.response_text.strip():
            return None
        script, share, letters = script_of(data.response_text, max_chars=self.max_chars)
        why = "no letters" if not letters else f"{script}: {share:.0%} of {letters} letters (weighted)"
        return EvaluationOutcome(self.name, None, script, why)


output_format: Final = OutputFormat()
output_script: Final = OutputScript()
