"""A real SMTP server for the alert tests: aiosmtpd on 127.0.0.1 (the `inbox` fixture in conftest)
that keeps every message and takes one login."""

from __future__ import annotations

import email
import email.policy
import socket
from email.message import EmailMessage

from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "pipeline", "smtp-secret-3f9a"


class Inbox:
    """aiosmtpd handler that keeps every message; login only with USER and PASSWORD."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        self.logins.append(mechanism)
        return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
