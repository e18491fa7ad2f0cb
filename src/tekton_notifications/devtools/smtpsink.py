"""A local SMTP server that keeps every mail it is given: the sendmail task's stand-in.

Speaks enough of RFC 5321 for Python's smtplib (what the catalog's sendmail task uses): EHLO
or HELO, STARTTLS when given a certificate (the task calls ``starttls()`` whenever its Secret
says ``tls: "False"``, so a sink without it makes the task fail, as a real server would), MAIL,
RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT. No AUTH: the demo's Secret has no password.
``fail(code)`` makes it refuse the next recipients (550 for good, 451 for later), as a server
refusing mail does, to show a delivery failing.
Python 3.12 removed ``smtpd``; this is a thread per connection on the standard library.
"""

from __future__ import annotations

import email
import email.policy
import socketserver
import ssl
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    tls: bool

    @property
    def subject(self) -> str:
        return str(self._message()["subject"] or "")

    @property
    def body(self) -> str:
        message = self._message()
        part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
        payload = part.get_payload(decode=True) if part is not None else b""
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)

    def _message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class SMTPSink:
    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.mails: list[Mail] = []
        self._lock = threading.Lock()
        self._failing: tuple[int, int] = (0, 0)  # (reply code, recipients left to refuse)
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                sink._session(self, ssl_context)

        self._server = socketserver.ThreadingTCPServer((host, 0), Handler)
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> int:
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="smtp-sink", daemon=True
        ).start()
        return self.port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, code: int = 550, times: int = 1) -> None:
        """Answer ``code`` to the next ``times`` RCPT commands (550 permanent, 451 transient)."""
        with self._lock:
            self._failing = (code, times)

    def _refusal(self) -> int:
        with self._lock:
            code, left = self._failing
            self._failing = (code, left - 1) if left else (0, 0)
        return code if left else 0

    def _session(self, handler: Any, context: ssl.SSLContext | None) -> None:
        opened: list[Any] = []  # the TLS socket and its files, closed here (not by socketserver)
        try:
            self._converse(handler, context, opened)
        finally:
            for thing in reversed(opened):
                thing.close()

    def _converse(self, handler: Any, context: ssl.SSLContext | None, opened: list[Any]) -> None:
        reader, writer, tls = handler.rfile, handler.wfile, False

        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            writer.flush()

        say("220 localhost tekton-notifications SMTP sink")
        sender, recipients = "", list[str]()
        while line := reader.readline(1 << 16):
            verb, _, argument = line.decode("utf-8", "replace").strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                extensions = ["8BITMIME", "SMTPUTF8"] + (
                    ["STARTTLS"] if context and not tls else []
                )
                for extension in ["localhost", *extensions][:-1]:
                    say(f"250-{extension}")
                say(f"250 {(['localhost', *extensions])[-1]}")
            elif verb == "HELO":
                say("250 localhost")
            elif verb == "STARTTLS" and context is not None and not tls:
                say("220 ready to start TLS")
                connection = context.wrap_socket(handler.connection, server_side=True)
                reader, writer, tls = connection.makefile("rb"), connection.makefile("wb"), True
                opened += [connection, reader, writer]
            elif verb == "MAIL":
                sender, recipients = argument.partition(":")[2].strip().strip("<>"), list[str]()
                say("250 OK")
            elif verb == "RCPT" and (refused := self._refusal()):
                say(f"{refused} {'try again later' if refused < 500 else 'mailbox unavailable'}")
            elif verb == "RCPT":
                recipients.append(argument.partition(":")[2].strip().strip("<>"))
                say("250 OK")
            elif verb == "DATA":
                say("354 end data with <CR><LF>.<CR><LF>")
                data = _read_data(reader)
                with self._lock:
                    self.mails.append(Mail(sender, tuple(recipients), data, tls))
                say("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                say("250 OK")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say(f"502 {verb} not implemented")


def _read_data(reader: Any) -> bytes:
    lines: list[bytes] = []
    while line := reader.readline(1 << 20):
        if line in (b".\r\n", b".\n"):
            break
        lines.append(line[1:] if line.startswith(b"..") else line)
    return b"".join(lines)
