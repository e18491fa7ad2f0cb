"""The SMTP sink refuses recipients on purpose, as a mail server does, so that a sendmail
delivery can be shown failing (tests/core/test_catalog_failure_signals.py runs the catalog's
sendmail against it)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tekton_notifications.devtools.smtpsink import SMTPSink


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink()
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "code",
    [pytest.param(550, id="permanent-550"), pytest.param(451, id="transient-451")],
)
def test_a_refused_recipient_keeps_no_mail_and_the_next_one_is_accepted(
    sink: SMTPSink, code: int
) -> None:
    sink.fail(code)
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("tekton@example.com", "team@example.com", b"Subject: x\r\n\r\nbody")
        assert refused.value.recipients["team@example.com"][0] == code
        assert sink.mails == []
        client.sendmail("tekton@example.com", "team@example.com", b"Subject: y\r\n\r\nbody")
    assert [mail.recipients for mail in sink.mails] == [("team@example.com",)]
