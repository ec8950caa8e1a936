"""A real SMTP server for Herald's tests (aiosmtpd), on a loopback port.

Scripted by recipient: unknown@... -> 550, busy@... -> 451. AUTH accepts
herald/secret and refuses anything else with 535. Every accepted message is
parsed with Python's email package and printed as one JSON line on stdout.
"""

import argparse
import asyncio
import email
import json
import sys
from email import policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("unknown@"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.startswith("busy@"):
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=policy.default)
        header_block = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        parts = []
        for part in msg.walk():
            if part.get_content_maintype() == "multipart":
                continue
            parts.append(
                {
                    "type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    "content": part.get_content(),
                }
            )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "from_name": msg["From"].addresses[0].display_name if msg["From"] else None,
            "from_address": msg["From"].addresses[0].addr_spec if msg["From"] else None,
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "date": str(msg["Date"]) if msg["Date"] else None,
            "message_id": str(msg["Message-ID"]) if msg["Message-ID"] else None,
            "content_type": msg.get_content_type(),
            "header_block": header_block,
            "parts": parts,
            "authenticated": session.authenticated,
        }
        print(json.dumps(record), flush=True)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login == b"herald" and auth_data.password == b"secret":
        return AuthResult(success=True)
    # handled=False lets aiosmtpd send the 535 reply (handled=True would hang the client).
    return AuthResult(success=False, handled=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=args.port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()  # run until the test closes our stdin
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
