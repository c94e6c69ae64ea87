"""A queue's depth as the queue itself says it now: a passive `queue.declare` over AMQP 0-9-1, whose
`declare-ok` carries the queue's count of ready messages. The management API's counts are statistics
emitted every 5 s, so right after a shovel starts they can read 0 while the queue still holds messages.

The few frames this needs, on the standard library (the toolkit ships no AMQP client): connect, PLAIN
login, open the vhost and a channel, declare passively, close.
"""

from __future__ import annotations

import socket
import ssl
import struct

FRAME_METHOD, FRAME_HEARTBEAT, FRAME_END = 1, 8, b"\xce"


class AMQPError(Exception):
    """The broker could not be asked: unreachable, refused, or the queue is not there."""


def _shortstr(value: str) -> bytes:
    data = value.encode()
    return struct.pack("B", len(data)) + data


def _longstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _method(channel: int, class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + arguments
    return struct.pack(">BHI", FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


class _Connection:
    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, b""

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AMQPError("the broker closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def expect(self, class_id: int, method_id: int) -> bytes:
        """The arguments of the next method frame, which must be class_id.method_id."""
        while True:
            kind, _, size = struct.unpack(">BHI", self._read(7))
            payload = self._read(size + 1)[:-1]
            if kind == FRAME_HEARTBEAT:
                continue
            got = struct.unpack(">HH", payload[:4])
            if got == (class_id, method_id):
                return payload[4:]
            if got in ((10, 50), (20, 40)):  # connection.close, channel.close: the broker's reply text says why
                code = struct.unpack(">H", payload[4:6])[0]
                text = payload[7 : 7 + payload[6]].decode(errors="replace")
                raise AMQPError(f"{code} {text}")
            raise AMQPError(f"unexpected AMQP method {got} (expected {(class_id, method_id)})")


def queue_depth(
    host: str,
    port: int,
    user: str,
    password: str,
    vhost: str,
    queue: str,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10,
) -> int:
    """The ready messages `queue` holds now (those a consumer holds unacknowledged are not counted)."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise AMQPError(f"cannot reach amqp{'s' if tls else ''}://{host}:{port}: {exc.__class__.__name__}") from None
    try:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
        amqp = _Connection(sock)
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        amqp.expect(10, 10)  # connection.start
        login = _longstr(f"\0{user}\0{password}".encode())
        sock.sendall(_method(0, 10, 11, struct.pack(">I", 0) + _shortstr("PLAIN") + login + _shortstr("en_US")))
        channel_max, frame_max, _ = struct.unpack(">HIH", amqp.expect(10, 30)[:8])  # connection.tune
        sock.sendall(_method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        sock.sendall(_method(0, 10, 40, _shortstr(vhost) + _shortstr("") + b"\0"))
        amqp.expect(10, 41)
        sock.sendall(_method(1, 20, 10, _shortstr("")))
        amqp.expect(20, 11)
        # queue.declare: reserved short, name, bits (passive only), no arguments
        sock.sendall(_method(1, 50, 10, struct.pack(">H", 0) + _shortstr(queue) + b"\x01" + struct.pack(">I", 0)))
        ok = amqp.expect(50, 11)
        (count,) = struct.unpack(">I", ok[1 + ok[0] : 5 + ok[0]])
        sock.sendall(_method(0, 10, 50, struct.pack(">H", 200) + _shortstr("") + struct.pack(">HH", 0, 0)))
        return count
    except (OSError, struct.error) as exc:
        raise AMQPError(f"amqp://{host}:{port}: {exc}") from None
    finally:
        raw.close()
