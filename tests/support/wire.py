"""What crosses a wire on given TCP ports, captured as tcpdump captures it: a raw packet socket (AF_PACKET)
on an interface of this host, `lo` or a Docker bridge the test made, which sees every frame the kernel sends
or receives there. Root only; nothing is injected.

Each TCP stream's payload is put back in sequence order, so a pattern split across segments is still found; a
retransmitted range counts once, and a range the capture did not see splits the stream into runs rather than
gluing its two sides together. Loopback frames are seen twice (sent and received): only the outgoing copy is kept.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
from collections import defaultdict

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, PACKET_STATISTICS = 263, 1, 1, 6
SO_RCVBUFFORCE, SO_ATTACH_FILTER = 33, 26
RECEIVE_BUFFER = 32 * 1024 * 1024  # so a reader thread the GIL holds back for a moment loses no frame
ETH_HEADER = 14
SNAPLEN = 256 * 1024  # lo's MTU is 64 KiB: a whole frame fits


class WireCapture:
    def __init__(self, ports: set[int], interface: str = "lo"):
        self.ports = set(ports)
        self.interface = interface
        self.frames = 0
        self.drops = 0  # frames the kernel had for this socket but dropped: a capture with drops proves nothing
        self._segments: dict[tuple, dict[int, bytes]] = defaultdict(dict)  # stream → seq → payload
        self._stop = threading.Event()
        # protocol 0: the socket takes no frame until bound, with its filter, to the one interface
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        _attach(self._sock, tcp_ports_filter(self.ports))
        self._sock.bind((interface, ETH_P_ALL))  # Python puts it in network order
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
        _, self.drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
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
        """Each contiguous run of each direction of each captured connection, its payload in sequence order."""
        return [run for segments in list(self._segments.values()) for run in _runs(dict(segments))]

    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.streams())

    def contains(self, pattern: bytes) -> bool:
        return any(pattern in stream for stream in self.streams())


def tcp_ports_filter(ports: set[int]) -> list[tuple[int, int, int, int]]:
    """A classic BPF program (code, jt, jf, k) that keeps IPv4 TCP frames from or to `ports`, whole, and drops
    every other frame in the kernel: the busy loopback of other tests never fills the socket's buffer."""
    n, ports = len(ports), sorted(ports)
    reject, accept = 7 + 2 * n, 8 + 2 * n  # the two return instructions' indexes
    program = [(0x28, 0, 0, 12), (0x15, 0, reject - 2, 0x0800), (0x30, 0, 0, 23), (0x15, 0, reject - 4, 6)]
    program.append((0xB1, 0, 0, ETH_HEADER))  # x = the IP header's length
    for field in (ETH_HEADER, ETH_HEADER + 2):  # source port, then destination port
        program.append((0x48, 0, 0, field))
        for port in ports:  # a jump counts from the next instruction
            program.append((0x15, accept - len(program) - 1, 0, port))
    return [*program, (0x06, 0, 0, 0), (0x06, 0, 0, SNAPLEN)]


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(code))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _runs(segments: dict[int, bytes]) -> list[bytes]:
    """The payload of one direction of a connection as contiguous runs. Sequence numbers are read as signed
    distances from the first captured one, so a wrap past 2**32 still sorts in order; an overlap (a
    retransmission cut differently) is taken once; a gap starts a new run."""
    first = next(iter(segments))
    runs: list[bytearray] = []
    end = None
    for start, payload in sorted(((seq - first + 2**31) % 2**32 - 2**31, data) for seq, data in segments.items()):
        if end is None or start > end:
            runs.append(bytearray(payload))
            end = start + len(payload)
        elif start + len(payload) > end:
            runs[-1] += payload[end - start :]
            end = start + len(payload)
    return [bytes(run) for run in runs]


TLS_RECORD_TYPES = {20, 21, 22, 23}  # change_cipher_spec, alert, handshake, application_data


def tls_records(stream: bytes) -> int | None:
    """How many TLS 1.2/1.3 records `stream` is, back to back to its end (a record cut off by the end of the
    capture allowed); None if it is not TLS records. The capture may join a connection, or resume after a gap,
    inside a record: the records may start after a prefix shorter than one record, at the first offset from
    which they run to the end."""
    for start in range(min(len(stream), MAX_RECORD)):
        count = _records_from(stream, start)
        if count:
            return count
    return None


MAX_RECORD = 5 + 2**14 + 256


def _records_from(stream: bytes, offset: int) -> int | None:
    count = 0
    while offset + 5 <= len(stream):
        kind, version, length = (
            stream[offset],
            stream[offset + 1 : offset + 3],
            struct.unpack("!H", stream[offset + 3 : offset + 5])[0],
        )
        if kind not in TLS_RECORD_TYPES or version not in (b"\x03\x01", b"\x03\x03") or 5 + length > MAX_RECORD:
            return None
        offset, count = offset + 5 + length, count + 1
    return count or None


def assert_only_tls_crossed(wire: WireCapture, body: bytes) -> None:
    """The nodes talked while `wire` captured, and what crossed was TLS records, `body` nowhere in clear (nor
    its last 24 bytes)."""
    assert wire.payload_bytes() > len(body), f"no inter-node traffic captured on {wire.interface}"
    assert wire.drops == 0, f"the capture on {wire.interface} dropped {wire.drops} frames"
    assert not wire.contains(body) and not wire.contains(body[-24:])
    assert all(tls_records(s) for s in wire.streams()), [s[:16] for s in wire.streams() if not tls_records(s)]
