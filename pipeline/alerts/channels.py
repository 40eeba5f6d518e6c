"""Where alerts go: an SMTP server and, optionally, a Slack-compatible webhook.

The resource holds the settings (the SMTP password and the webhook URL, which carries a token,
are `dagster.EnvVar`s: Dagster reads them when a run uses them, so they are in no run config,
event or log). Delivery retries a few times with a growing pause and then reports the failure to
its caller instead of raising: an alert that cannot be sent never fails a load.
"""

from __future__ import annotations

import json
import smtplib
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import dagster as dg
from pydantic import Field

SMTP_TIMEOUT_SECONDS = 30
WEBHOOK_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Delivery:
    """How sending went: `sent` or `failed`, after how many attempts, and why it failed."""

    status: str
    attempts: int
    error: str | None = None


class Alerts(dg.ConfigurableResource):
    """The alert channels of a deployment (PIPELINE_SMTP_*, PIPELINE_ALERT_*)."""

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    sender: str | None = None
    recipients: list[str] = Field(default_factory=list)
    webhook_url: str | None = None
    attempts: int = 3
    retry_delay_seconds: float = 2.0

    @property
    def email_on(self) -> bool:
        return bool(self.smtp_host)

    @property
    def webhook_on(self) -> bool:
        return bool(self.webhook_url)

    def connect(self) -> smtplib.SMTP:
        """An SMTP session past EHLO (and STARTTLS when asked); logged in if a user is set."""
        assert self.smtp_host is not None
        smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=SMTP_TIMEOUT_SECONDS)
        try:
            smtp.ehlo()
            if self.smtp_starttls:
                smtp.starttls()
                smtp.ehlo()
            if self.smtp_user:
                smtp.login(self.smtp_user, self.smtp_password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send_email(self, message: EmailMessage, recipients: list[str]) -> Delivery:
        def send() -> None:
            with self.connect() as smtp:
                smtp.send_message(message, to_addrs=recipients)

        return self._with_retries(send, (smtplib.SMTPException, OSError))

    def post_webhook(self, payload: dict[str, Any]) -> Delivery:
        assert self.webhook_url is not None
        problem = _url_problem(self.webhook_url)
        if problem is not None:
            # urllib's and http.client's own errors quote the URL, token and all, into the log.
            return Delivery(
                "failed", 0, f"PIPELINE_ALERT_WEBHOOK_URL {problem} (not shown: it holds a token)"
            )
        request = urllib.request.Request(
            self.webhook_url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )

        def post() -> None:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS):
                pass

        try:
            return self._with_retries(post, (urllib.error.URLError, OSError), _without_url)
        except ValueError as error:  # http.client's InvalidURL and the like quote the URL
            return Delivery(
                "failed",
                1,
                f"PIPELINE_ALERT_WEBHOOK_URL is not a valid URL ({type(error).__name__}; not "
                "shown: it holds a token)",
            )

    def _with_retries(
        self,
        action: Callable[[], None],
        transient: tuple[type[BaseException], ...],
        describe: Callable[[BaseException], str] = str,
    ) -> Delivery:
        delay = self.retry_delay_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                action()
                return Delivery("sent", attempt)
            except transient as error:
                if attempt == self.attempts:
                    return Delivery("failed", attempt, f"{type(error).__name__}: {describe(error)}")
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable: attempts >= 1")


def _url_problem(url: str) -> str | None:
    """What makes a webhook URL unusable, in words that do not quote it; None if nothing."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "holds a space, a control character or a character outside ASCII"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
    except ValueError:
        return "is not a valid URL (its host or its port)"
    if parts.scheme not in ("http", "https"):
        return "does not start with https://"
    return None


def _without_url(error: BaseException) -> str:
    """A webhook error without the URL, whose path is a secret token."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error)
