"""A small DNS server per user network, on the network's gateway address.

Every server answers from one `NameIndex`: the query's source address says which container asks, and
it gets the names of every network it is on, whichever gateway it asked (names.py). Names that are
not ours go to the asker's `--dns` servers, else the host's resolvers. Runs in the daemon's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSRecord

from dockyard import trace
from dockyard.network.names import NameIndex, reverse_name

log = logging.getLogger(__name__)
TTL = 600
FORWARD_TIMEOUT = 3.0


class DnsServer:
    def __init__(self, address: str, index: NameIndex, upstreams: Callable[[], list[str]], port: int = 53) -> None:
        """`upstreams`: the host's resolvers, read per forwarded query (resolv.conf may change)."""
        self.address, self.port = address, port
        self.index = index
        self.host_upstreams = upstreams
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
                    out = await server.answer(data, addr[0])
                    if out is not None:
                        self.transport.sendto(out, addr)  # type: ignore[attr-defined]
                loop.create_task(reply())

        with trace.step("socket", f"bind udp+tcp {self.address}:{self.port}",
                        "the network's DNS server: containers on it resolve each other's names here (their "
                        "resolv.conf names the gateway)"):
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
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                out = await self.answer(await reader.readexactly(n), peer[0])
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, data: bytes, src: str) -> bytes | None:
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        q = req.q
        name = str(q.qname).rstrip(".").lower()
        cid = self.index.asker(src)
        if cid is not None:
            addr = reverse_name(name) if q.qtype == QTYPE.PTR else None
            found = self.index.reverse(cid, addr) if addr else self.index.resolve(cid, name)
            if found is not None:
                reply = req.reply()
                for ptr in found.names:
                    reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(ptr + "."), ttl=TTL))
                for ip in found.ips:
                    v6 = ":" in ip
                    if q.qtype == QTYPE.ANY or q.qtype == (QTYPE.AAAA if v6 else QTYPE.A):
                        rtype, rdata = (QTYPE.AAAA, AAAA(ip)) if v6 else (QTYPE.A, A(ip))
                        reply.add_answer(RR(q.qname, rtype, rdata=rdata, ttl=TTL))
                return bytes(reply.pack())  # other types for our names: NOERROR, no answers
            if not self.index.forwards(cid):  # as dockerd 25+ (proxyDNS off without external access)
                reply = req.reply()
                reply.header.rcode = RCODE.SERVFAIL
                return bytes(reply.pack())
        upstreams = (self.index.upstreams(cid) if cid else []) or self.host_upstreams()
        return await self._forward(req, data, [u for u in upstreams if u != self.address])

    async def _forward(self, req: DNSRecord, data: bytes, upstreams: list[str]) -> bytes:
        for upstream in upstreams:
            try:
                return await asyncio.wait_for(_udp_query(data, upstream), FORWARD_TIMEOUT)
            except (TimeoutError, OSError) as e:
                log.debug("dns forward to %s failed: %s", upstream, e)
        reply = req.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack())


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
