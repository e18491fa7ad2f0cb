"""Quoting a step's log: terminal codes out, credentials redacted, the end kept in budget.

Every pattern of ``redaction.PATTERNS`` has a row here showing what it hides and what it
keeps; docs/templates.md lists the same table for template authors.
"""

from __future__ import annotations

import time

import pytest

from tekton_notifications import redaction

GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        pytest.param(
            "Authorization: Basic dXNlcjpwYXNzd29yZA==",
            "Authorization: [REDACTED:authorization]",
            id="authorization-header",
        ),
        pytest.param(
            '  "authorization": "token abc123def456"',
            '  "authorization": [REDACTED:authorization]',
            id="authorization-in-json",
        ),
        pytest.param(
            "retrying with bearer eyJraWQiOiJhYmMifQ",
            "retrying with bearer [REDACTED:bearer]",
            id="bearer-token",
        ),
        pytest.param(
            "cloning https://x-access-token:s3cr3t@github.com/example/storefront",
            "cloning https://[REDACTED:url-credentials]@github.com/example/storefront",
            id="url-user-and-password",
        ),
        pytest.param(
            "pushing to https://oauth2:glpat-abc@gitlab.example.com/a/b.git",
            "pushing to https://[REDACTED:url-credentials]@gitlab.example.com/a/b.git",
            id="url-credentials-before-token-patterns",
        ),
        pytest.param(
            f"GITHUB_TOKEN={GITHUB_TOKEN} make release",
            "GITHUB_TOKEN=[REDACTED:github-token] make release",
            id="github-classic-token",
        ),
        pytest.param(
            "token github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz",
            "token [REDACTED:github-token]",
            id="github-fine-grained-token",
        ),
        pytest.param(
            "using glpat-AbCdEfGhIjKlMnOpQrSt12 for the API",
            "using [REDACTED:gitlab-token] for the API",
            id="gitlab-token",
        ),
        pytest.param(
            "posting with xoxb-123456789012-abcdefABCDEF",
            "posting with [REDACTED:slack-token]",
            id="slack-bot-token",
        ),
        pytest.param(
            "aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE",
            "aws configure set aws_access_key_id [REDACTED:aws-access-key]",
            id="aws-access-key-id",
        ),
        pytest.param(
            "id_token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJlLXBhcnQ",
            "id_token [REDACTED:jwt]",
            id="jwt",
        ),
        pytest.param(
            "DB_PASSWORD=hunter2 ./migrate",
            "DB_PASSWORD=[REDACTED:secret-assignment] ./migrate",
            id="password-assignment",
        ),
        pytest.param(
            "client_secret: 'abc def'",
            "client_secret: [REDACTED:secret-assignment]",
            id="quoted-secret-with-a-space",
        ),
        pytest.param(
            "--api-key=0123456789abcdef --verbose",
            "--api-key=[REDACTED:secret-assignment] --verbose",
            id="api-key-flag",
        ),
        pytest.param(PEM, "[REDACTED:private-key]", id="pem-private-key-block"),
        pytest.param(
            PEM.split("\n", 1)[1],
            "[REDACTED:private-key]",
            id="pem-tail-whose-begin-line-was-not-read",
        ),
        pytest.param(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nMIIEpAIBAAKCAQEA",
            "[REDACTED:private-key]",
            id="pem-head-whose-end-line-was-not-read",
        ),
        pytest.param(
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz",
            "[REDACTED:key-material]",
            id="a-key-line-without-its-begin-or-end",
        ),
        pytest.param(
            "sha256:" + "0123456789abcdef" * 4,
            "sha256:" + "0123456789abcdef" * 4,
            id="a-hex-digest-is-not-key-material",
        ),
        pytest.param(
            "FAILED tests/test_checkout.py::test_retry - AssertionError: 3 != 2",
            "FAILED tests/test_checkout.py::test_retry - AssertionError: 3 != 2",
            id="an-ordinary-line-is-kept",
        ),
        pytest.param(
            "commit 9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07",
            "commit 9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07",
            id="a-commit-sha-is-not-a-secret",
        ),
    ],
)
def test_what_looks_like_a_credential_is_redacted(line: str, redacted: str) -> None:
    assert redaction.redact(line) == redacted


def test_every_pattern_redacts_its_own_example() -> None:
    """The examples are what docs/templates.md shows: each must be caught by its pattern."""
    for pattern in redaction.PATTERNS:
        assert redaction.MARK.format(pattern.name) in redaction.redact(pattern.example), pattern


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param("\x1b[31mFAILED\x1b[0m test_a", "FAILED test_a", id="colours"),
        pytest.param("\x1b[1;32m✓\x1b[22m ok", "✓ ok", id="bold-and-unicode"),
        pytest.param("\x1b]8;;https://x\x07link\x1b]8;;\x07", "link", id="osc-hyperlink"),
        pytest.param("\x1b[2K\x1b[1Gdownloading", "downloading", id="cursor-movement"),
        pytest.param("10%\r50%\r100%", "100%", id="carriage-return-progress"),
        pytest.param("a\tb\x07\x08c", "a\tbc", id="control-characters-but-tabs"),
    ],
)
def test_terminal_codes_are_stripped(raw: str, shown: str) -> None:
    assert redaction.strip_ansi(raw) == shown


@pytest.mark.parametrize(
    ("raw", "lines", "max_bytes", "cut_short", "tail"),
    [
        pytest.param(b"1\n2\n3\n4\n", 2, 100, False, "3\n4", id="last-lines"),
        pytest.param(b"aaaa\nbbbb\ncccc\n", 3, 9, False, "bbbb\ncccc", id="bytes-drop-whole-lines"),
        pytest.param(
            b"x" * 50 + b"\n", 5, 11, False, "…" + "x" * 8, id="one-long-line-keeps-its-end"
        ),
        pytest.param(
            b"ok\nGITHUB_TOKEN=ghp_a1B2c3", 5, 100, True, "ok", id="a-cut-last-line-is-dropped"
        ),
        pytest.param(b"\xff\xfeboom\n", 1, 100, False, "\ufffd\ufffdboom", id="not-utf8"),
        pytest.param(b"", 5, 100, False, "", id="empty"),
    ],
)
def test_the_tail_is_bounded_in_lines_and_bytes(
    raw: bytes, lines: int, max_bytes: int, cut_short: bool, tail: str
) -> None:
    quoted = redaction.log_tail(raw, lines=lines, max_bytes=max_bytes, cut_short=cut_short)
    assert quoted == tail
    assert len(quoted.encode()) <= max_bytes


def test_redaction_happens_before_the_tail_is_cut() -> None:
    """A key block read in full is redacted whole, even when the tail keeps only its end."""
    raw = f"{PEM}\ndone\n".encode()
    assert redaction.log_tail(raw, lines=2, max_bytes=1000) == "[REDACTED:private-key]\ndone"


#: Logs are written by whoever controls the step: inputs that made the first patterns
#: (``\b`` starts, unbounded repeats) take minutes now take well under a second.
HOSTILE = {
    "dots": "a." * 131_072,
    "dashes-after-jwt-starts": "eyJ-" * 65_536,
    "spaces-after-a-header": ("authorization: x" + " " * 4_000 + "y\n") * 60,
    "many-assignments": "password=1\n" * 23_831,
    "long-url-userinfo": ("https://" + "a" * 300 + ":") * 848,
    "one-long-line": "x" * 262_144,
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_logs_are_cleaned_in_bounded_time(text: str) -> None:
    started = time.perf_counter()
    quoted = redaction.log_tail(text.encode(), lines=200, max_bytes=65_536)
    # Measured at most 0.5 s on 2 busy cores; 10 s is a bound, not a benchmark.
    assert time.perf_counter() - started < 10.0
    assert len(quoted.encode()) <= 65_536
