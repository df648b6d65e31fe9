"""A DNS server for tests: answers one name from a script, on 127.0.0.1 (dnslib)."""

from __future__ import annotations

import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class RebindingDns:
    """A DNS server on 127.0.0.1 (UDP, port chosen by the OS) answering one name's A queries with the
    next of `answers` (the last one repeated), like an attacker's server rebinding its name."""

    def __init__(self, name: str, answers: list[str]) -> None:
        self.name = name
        self.answers = list(answers)
        self.asked: list[str] = []
        dns = self

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
                reply = request.reply()
                question = request.q
                if str(question.qname).rstrip(".") != dns.name:
                    reply.header.rcode = RCODE.NXDOMAIN
                elif question.qtype == QTYPE.A:
                    address = dns.answers.pop(0) if len(dns.answers) > 1 else dns.answers[0]
                    dns.asked.append(address)
                    reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=0))
                return reply  # AAAA: the name exists, with no IPv6 address

        self.server = DNSServer(
            Resolver(), address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _line: None)
        )
        # serve_forever's poll interval is how long stopping takes (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.address = f"127.0.0.1:{self.server.server.server_address[1]}"

    def close(self) -> None:
        """Stop answering."""
        self.server.server.shutdown()
        self.server.server.server_close()
