"""Email alerts over SMTP (standard library), to PAYMENT_ALERT_EMAIL."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from tonrail.monitoring.channels.base import AlertMessage, ChannelError, details_text
from tonrail.settings import Settings


class EmailChannel:
    """Sends one message per alert event; a 5xx reply from the server is not retried."""

    name = "email"

    def __init__(self, settings: Settings):
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password.get_secret_value()
        self.starttls = settings.smtp_starttls
        self.sender = settings.alert_email_from
        self.recipients = [a.strip() for a in settings.payment_alert_email.split(",") if a.strip()]
        self.timeout = settings.alert_channel_timeout_seconds

    def compose(self, message: AlertMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = message.title[:200]
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain="tonrail")
        mail["X-Tonrail-Alert"] = message.dedup_key
        mail["X-Tonrail-Action"] = message.action
        text = message.body or (
            f"{message.summary}\n\nrule: {message.rule}\nseverity: {message.severity}\n"
            f"alert: {message.alert_id}\ndedup key: {message.dedup_key}\n"
            f"action: {message.action}\n\n{details_text(message.details)}\n"
        )
        mail.set_content(text)
        return mail

    def _send_sync(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(mail, from_addr=self.sender, to_addrs=self.recipients)

    async def send(self, message: AlertMessage) -> None:
        if not self.recipients:
            raise ChannelError("PAYMENT_ALERT_EMAIL is empty", retryable=False)
        mail = self.compose(message)
        try:
            await asyncio.to_thread(self._send_sync, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise ChannelError(
                f"recipients refused: {sorted(exc.recipients)}", retryable=False
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise ChannelError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300], retryable=exc.smtp_code < 500
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(
                f"SMTP {self.host}:{self.port} {type(exc).__name__}: {exc}"[:300]
            ) from None
