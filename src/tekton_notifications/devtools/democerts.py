"""A throwaway certificate for the demo's TLS stand-ins, made with ``openssl`` when needed.

The SMTP sink offers STARTTLS with it (smtplib does not check the certificate unless asked),
and the Telegram and Slack Web API stand-ins serve ``api.telegram.org`` and ``slack.com`` with
it: the catalog tasks post to those fixed https URLs, so the demo's curl config (standins.py)
sends those hosts to the stand-ins and trusts this certificate, and nothing else. Never used
outside ``make demo`` and the tests.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


class NoOpenSSL(RuntimeError):
    pass


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make(folder: Path, hosts: tuple[str, ...] = ("localhost", "api.telegram.org")) -> Certificate:
    """A self-signed certificate (its own CA) for ``hosts`` and 127.0.0.1, valid one day."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise NoOpenSSL("openssl is not installed: the TLS stand-ins need it for a certificate")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "demo-cert.pem", folder / "demo-key.pem"
    names = ",".join([*(f"DNS:{h}" for h in hosts), "IP:127.0.0.1"])
    subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", "/CN=tekton-notifications demo", "-addext", f"subjectAltName={names}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return Certificate(cert, key)
