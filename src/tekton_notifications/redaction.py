"""Making a step's log fit to quote in a message: ANSI codes out, credentials redacted,
the last lines kept within a byte budget.

Owns the table of what looks like a credential (:data:`PATTERNS`, documented in
docs/templates.md) and the order of the work: decode, strip terminal codes, redact on the
whole text read, then cut to the last lines. Redacting before cutting means a cut never leaves
half a token for the patterns to miss; a last line the API cut short (``limitBytes``) is
dropped for the same reason. Must not: do I/O.

Redaction is pattern-based and best effort: a secret that looks like none of these (a bare
password echoed on its own, a token split over lines) goes through. Quoting logs is opt-in
per template for that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: What replaces a credential: says which pattern matched, never any of the secret.
MARK: Final = "[REDACTED:{}]"

#: Terminal escape sequences: CSI (colours, cursor), OSC (titles, hyperlinks), and the
#: two-character escapes; then the other control characters a message should not carry.
_ANSI: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Pattern:
    """One kind of credential: its name (shown in the mark), what it matches, an example."""

    name: str
    regex: re.Pattern[str]
    #: The groups kept around the secret (e.g. the header name): ``\1``-style template.
    keep: str
    example: str


def _p(name: str, regex: str, keep: str, example: str, flags: int = 0) -> Pattern:
    return Pattern(name, re.compile(regex, flags), keep, example)


#: The credentials redacted, in the order they are applied (specific before generic).
#:
#: A step's log is written by whoever controls the step, so every pattern runs in linear
#: time: a token pattern starts only where its own characters start (a lookbehind, not
#: ``\b``, which matches inside runs of ``.`` and ``-``), repeats are possessive or bounded,
#: and :func:`log_tail` caps lines at :data:`MAX_LINE_CHARS` before any of them runs.
PATTERNS: Final[tuple[Pattern, ...]] = (
    _p(
        "private-key",
        r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z0-9 ]{0,40}"
        r"PRIVATE KEY( BLOCK)?-----|\Z)",
        "",
        "-----BEGIN RSA PRIVATE KEY----- ... -----END RSA PRIVATE KEY-----",
        re.DOTALL,
    ),
    _p(
        # The tail of a key whose BEGIN line was before the lines read.
        "private-key",
        r"\A(?:(?!-----BEGIN).)*?-----END [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----",
        "",
        "(key lines) -----END PRIVATE KEY-----",
        re.DOTALL,
    ),
    _p(
        # A line of base64 as long as a PEM body line, not all hex (a digest is not a key):
        # key material whose BEGIN and END lines are both outside the lines read.
        "key-material",
        r"(?m)^(?=[A-Za-z0-9+/]{0,63}[g-zG-Z+/])[A-Za-z0-9+/]{64}$",
        "",
        "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8k0Ux0NhUS3w7BRJY5P2Gp0Mh",
    ),
    _p(
        "authorization",
        r"(?im)^([^\n]{0,4096}?\b(?:proxy-)?authorization\"?[ \t]{0,8}[:=][ \t]{0,8})"
        r"(?!\[REDACTED)\S[^\n]*",
        r"\1{}",
        "Authorization: Basic dXNlcjpwYXNz",
    ),
    _p(
        "bearer",
        r"(?i)\b(bearer[ \t]{1,8})[A-Za-z0-9._~+/=-]{8,}+",
        r"\1{}",
        "Bearer abcdef0123456789",
    ),
    _p(
        "url-credentials",
        r"(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,30}://)[^/\s:@]{1,256}+(?::[^/\s@]{0,256}+)?@",
        r"\1{}@",
        "https://user:pass@git.example.com",
    ),
    _p(
        "github-token",
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,}+|github_pat_[A-Za-z0-9_]{22,}+)",
        "",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    ),
    _p(
        "gitlab-token",
        r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}+",
        "",
        "glpat-0123456789abcdefghij",
    ),
    _p(
        "slack-token",
        r"(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10,}+",
        "",
        "xoxb-1234567890-abcdefghij",
    ),
    _p(
        "aws-access-key",
        r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])",
        "",
        "AKIAIOSFODNN7EXAMPLE",
    ),
    _p(
        "jwt",
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+",
        "",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLWhlcmU",
    ),
    _p(
        "secret-assignment",
        r"(?i)(?<![\w.-])([\w.-]{0,64}?(?:password|passwd|pwd|secret|token|api[_-]?key"
        r"|access[_-]?key|private[_-]?key|credentials?)[\w.-]{0,64}+[\"']?[ \t]{0,8}[=:][ \t]{0,8})"
        r"(?!\[REDACTED)(\"[^\"\n]{0,256}\"|'[^'\n]{0,256}'|[^\s\"',;]{1,256}+)",
        r"\1{}",
        "password=hunter2, API_TOKEN: abc123",
    ),
)

#: Longer lines keep their last this many characters (after "…") before redaction runs.
MAX_LINE_CHARS: Final = 4_096


def strip_ansi(text: str) -> str:
    """Text as a terminal would show it: escape codes removed, a line overwritten by ``\\r``
    reduced to what was written last, other control characters dropped (tabs kept)."""
    text = _ANSI.sub("", text)
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            pieces = [piece for piece in line.split("\r") if piece]
            line = pieces[-1] if pieces else ""
        lines.append(line)
    return _CONTROL.sub("", "\n".join(lines))


def redact(text: str) -> str:
    """``text`` with every match of :data:`PATTERNS` replaced by :data:`MARK`."""
    for pattern in PATTERNS:
        mark = MARK.format(pattern.name)  # no backslashes: safe as a replacement template
        text = pattern.regex.sub(pattern.keep.format(mark) if pattern.keep else mark, text)
    return text


def log_tail(raw: bytes, *, lines: int, max_bytes: int, cut_short: bool = False) -> str:
    """The last ``lines`` lines of a log, at most ``max_bytes`` bytes of UTF-8, cleaned.

    ``cut_short``: the API stopped at its byte limit, so the last line may be a fragment
    (dropped: it could hold a credential cut too short to recognise). A single line longer
    than the budget keeps its end, marked with "…".
    """
    text = raw.decode("utf-8", errors="replace")
    if cut_short and not text.endswith("\n"):
        text = text.rpartition("\n")[0]
    text = "\n".join(_capped(line) for line in strip_ansi(text).split("\n"))
    text = redact(text).rstrip("\n")
    kept: list[str] = []
    size = 0
    for line in reversed(text.split("\n")[-lines:] if text else []):
        encoded = len(line.encode()) + (1 if kept else 0)
        if size + encoded > max_bytes:
            if not kept:
                kept.append("…" + _last_bytes(line, max_bytes - len("…".encode())))
            break
        kept.append(line)
        size += encoded
    return "\n".join(reversed(kept))


def _capped(line: str) -> str:
    """A line of at most :data:`MAX_LINE_CHARS`, keeping its end; the first word of the kept
    end is dropped too, as it may be the tail of a token whose start was cut."""
    if len(line) <= MAX_LINE_CHARS:
        return line
    kept = line[-MAX_LINE_CHARS:]
    return "…" + kept[len(kept.split(None, 1)[0]) :] if kept.strip() else "…"


def _last_bytes(line: str, budget: int) -> str:
    encoded = line.encode()[-max(budget, 0) :] if budget > 0 else b""
    return encoded.decode("utf-8", errors="ignore")
