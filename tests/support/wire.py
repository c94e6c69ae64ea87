"""What crosses a wire on given TCP ports, captured as tcpdump captures it: a raw packet socket (AF_PACKET)
on an interface of this host, `lo` or a Docker bridge the test made, which sees every frame the kernel sends
or receives there. Root only; nothing is injected.

Each TCP stream's payload is put back in sequence order, so a pattern split across segments is still found.
Loopback frames are seen twice (sent and received): there only the outgoing copy is kept.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import defaultdict

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 263, 1, 1
ETH_HEADER = 14
SNAPLEN = 256 * 1024  # lo's MTU is 64 KiB: a whole frame fits


class WireCapture:
    def __init__(self, ports: set[int], interface: str = "lo"):
        self.ports = set(ports)
        self.interface = interface
        self.frames = 0
        self._segments: dict[tuple, dict[int, bytes]] = defaultdict(dict)  # stream → seq → payload
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self._sock.bind((interface, 0))
        if interface != "lo":  # a bridge hands up the frames it forwards between its ports only when promiscuous
            membership = struct.pack("iHH8s", socket.if_nametoindex(interface), PACKET_MR_PROMISC, 0, b"")
            self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        self._sock.settimeout(0.2)  # so the reader sees `stop` within 0.2 s
        self._thread = threading.Thread(target=self._read, name=f"capture-{interface}", daemon=True)

    def __enter__(self) -> "WireCapture":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(SNAPLEN)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.interface != "lo" or address[2] == PACKET_OUTGOING:
                self._take(frame)

    def _take(self, frame: bytes) -> None:
        ip = frame[ETH_HEADER:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
            return
        ip_len, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ip_len:total]
        if len(tcp) < 20:
            return
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        if sport not in self.ports and dport not in self.ports:
            return
        self.frames += 1
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:
            self._segments[(ip[12:16], sport, ip[16:20], dport)][seq] = payload

    def streams(self) -> list[bytes]:
        """Each direction of each captured connection, its payload in sequence order."""
        return [b"".join(seg[s] for s in sorted(seg)) for seg in list(self._segments.values())]

    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.streams())

    def contains(self, pattern: bytes) -> bool:
        return any(pattern in stream for stream in self.streams())


TLS_RECORD_TYPES = {20, 21, 22, 23}  # change_cipher_spec, alert, handshake, application_data


def tls_records(stream: bytes) -> int | None:
    """How many whole TLS 1.2/1.3 records `stream` is, back to back from its first byte (a record cut off by
    the end of the capture allowed); None if it is not TLS records from its start."""
    offset = count = 0
    while offset + 5 <= len(stream):
        kind, version, length = (
            stream[offset],
            stream[offset + 1 : offset + 3],
            struct.unpack("!H", stream[offset + 3 : offset + 5])[0],
        )
        if kind not in TLS_RECORD_TYPES or version not in (b"\x03\x01", b"\x03\x03") or length > 2**14 + 256:
            return None
        offset, count = offset + 5 + length, count + 1
    return count


def assert_only_tls_crossed(wire: WireCapture, body: bytes) -> None:
    """The nodes talked while `wire` captured, and what crossed was TLS records, `body` nowhere in clear (nor
    its last 24 bytes)."""
    assert wire.payload_bytes() > len(body), f"no inter-node traffic captured on {wire.interface}"
    assert not wire.contains(body) and not wire.contains(body[-24:])
    assert all(tls_records(s) for s in wire.streams()), [s[:16] for s in wire.streams()]
