"""A small DNS server per user network (the aardvark-dns way), on the network's gateway address.

It answers A queries for names the `lookup` callback knows (container names, aliases, short ids on
that network) and forwards everything else to the host's resolvers. Runs in the daemon's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

log = logging.getLogger(__name__)
Lookup = Callable[[str], list[str] | None]  # name → IPv4s, None when the name is not ours
TTL = 600
FORWARD_TIMEOUT = 3.0


class DnsServer:
    def __init__(self, address: str, lookup: Lookup, upstreams: list[str], port: int = 53) -> None:
        self.address, self.port = address, port
        self.lookup = lookup
        self.upstreams = [u for u in upstreams if u != address]
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                async def reply() -> None:
                    out = await server.answer(data)
                    if out is not None:
                        self.transport.sendto(out, addr)  # type: ignore[attr-defined]
                loop.create_task(reply())

        transport, _ = await loop.create_datagram_endpoint(_Udp, local_addr=(self.address, self.port))
        self._udp = transport
        self._tcp = await asyncio.start_server(self._tcp_client, self.address, self.port)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
            self._tcp = None

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                out = await self.answer(await reader.readexactly(n))
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, data: bytes) -> bytes | None:
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        q = req.q
        name = str(q.qname).rstrip(".").lower()
        ips = self.lookup(name)
        if ips is not None:
            reply = req.reply()
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                for ip in ips:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
            return reply.pack()  # other types for our names: NOERROR, no answers
        return await self._forward(req, data)

    async def _forward(self, req: DNSRecord, data: bytes) -> bytes:
        for upstream in self.upstreams:
            try:
                return await asyncio.wait_for(_udp_query(data, upstream), FORWARD_TIMEOUT)
            except (TimeoutError, OSError) as e:
                log.debug("dns forward to %s failed: %s", upstream, e)
        reply = req.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()


async def _udp_query(data: bytes, server: str) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()

    class _Client(asyncio.DatagramProtocol):
        def datagram_received(self, resp: bytes, addr: tuple[str, int]) -> None:
            if not fut.done():
                fut.set_result(resp)

        def error_received(self, exc: Exception) -> None:
            if not fut.done():
                fut.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=(server, 53))
    try:
        transport.sendto(data)
        return await fut
    finally:
        transport.close()
