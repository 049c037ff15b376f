"""Where the FastAPI example's sign-in mails go: the console (default) or an SMTP server.

``AUTH_MAIL=console`` prints each mail to standard output, where uvicorn prints, so a
developer can click the link without a mail server. ``AUTH_MAIL=smtp`` sends it with
``smtplib`` (in a worker thread) to ``SMTP_HOST``:``SMTP_PORT`` (default 587), with
STARTTLS unless ``SMTP_STARTTLS=0``, logging in when ``SMTP_USERNAME`` is set (password
in ``SMTP_PASSWORD``), from ``MAIL_FROM``.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import sys
from dataclasses import dataclass, field
from email.message import EmailMessage

from authflows import Mailer, MailNotSent

SUBJECT = "Your sign-in link"


def message(email: str, link: str, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = SUBJECT, sender, email
    mail.set_content(f"Sign in: {link}\n\nThe link works once, for 15 minutes.\n")
    return mail


async def console_mailer(email: str, link: str) -> None:
    """Print the mail where uvicorn prints, flushed at once, the link on a line of its own."""
    print(
        f"{' sign-in mail ':-^79}\nTo: {email}\nSubject: {SUBJECT}\n\n{link}\n{'-' * 79}",
        file=sys.stdout,
        flush=True,
    )


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "auth@localhost"
    timeout: float = 10

    async def __call__(self, email: str, link: str) -> None:
        await asyncio.to_thread(self.send, message(email, link, self.sender))

    def send(self, mail: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as error:
            raise MailNotSent(f"SMTP {self.host}:{self.port}: {error}") from error


def mailer_from_env() -> Mailer:
    """The mailer ``AUTH_MAIL`` names (``console`` or ``smtp``)."""
    kind = os.environ.get("AUTH_MAIL", "console")
    if kind == "console":
        return console_mailer
    if kind == "smtp":
        return SmtpMailer(
            host=os.environ["SMTP_HOST"],
            port=int(os.environ.get("SMTP_PORT", "587")),
            starttls=os.environ.get("SMTP_STARTTLS", "1") != "0",
            username=os.environ.get("SMTP_USERNAME") or None,
            password=os.environ.get("SMTP_PASSWORD") or None,
            sender=os.environ.get("MAIL_FROM", "auth@localhost"),
        )
    raise ValueError(f"AUTH_MAIL must be 'console' or 'smtp', not {kind!r}")
