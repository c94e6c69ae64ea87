"""The wire capture's reassembly and TLS check, on made-up segments: the live wire tests trust them to tell a
TLS stream from a plaintext one whatever way the capture cut it."""

import random
import socket
import struct

from tests.support.waiting import wait_for
from tests.support.wire import WireCapture, _runs, tls_records

rng = random.Random(7)


def record(length: int) -> bytes:
    return b"\x17\x03\x03" + struct.pack("!H", length) + rng.randbytes(length)


STREAM = record(100) + record(3000) + record(40) + record(16000) + record(7)
NEAR_WRAP = 2**32 - 2500  # the stream's sequence numbers pass 2**32 after its third segment


def segments(data: bytes, size: int = 1000, first: int = NEAR_WRAP) -> dict[int, bytes]:
    return {(first + i) % 2**32: data[i : i + size] for i in range(0, len(data), size)}


def test_segments_across_the_sequence_wrap_join_in_order():
    assert _runs(segments(STREAM)) == [STREAM]


def test_a_retransmission_cut_differently_counts_once():
    cut = segments(STREAM) | {(NEAR_WRAP + 500) % 2**32: STREAM[500:1700]}
    assert _runs(cut) == [STREAM]


def test_a_missing_segment_splits_the_stream_instead_of_gluing_its_sides():
    cut = segments(STREAM)
    del cut[(NEAR_WRAP + 2000) % 2**32]
    assert _runs(cut) == [STREAM[:2000], STREAM[3000:]]


def test_tls_records_from_the_first_byte_or_after_a_record_tail():
    assert tls_records(STREAM) == 5
    assert tls_records(STREAM[50:]) == 4  # the capture joined inside the first record
    assert tls_records(STREAM[:-3]) == 5  # the last record cut off by the end of the capture


def test_plaintext_and_a_stream_with_foreign_bytes_are_not_tls():
    distribution = b"".join(struct.pack("!I", 60) + b"\x83h\x04a\x06" + rng.randbytes(55) for _ in range(40))
    assert tls_records(distribution) is None
    between = len(STREAM) - 12  # past the first record's length: no longer a tail the capture joined inside
    assert tls_records(STREAM[:between] + b"plaintext between records" + STREAM[between:]) is None
    assert tls_records(b"\x17\x03") is None  # not even one record header


def test_the_capture_takes_its_ports_whole_and_leaves_the_kernel_every_other_frame():
    watched, other = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    ours, theirs = socket.create_connection(watched.getsockname()), socket.create_connection(other.getsockname())
    accepted = [watched.accept()[0], other.accept()[0]]
    try:
        with WireCapture({watched.getsockname()[1]}) as wire:
            for i in range(2000):
                ours.sendall(b"ours-%d;" % i)
                theirs.sendall(b"theirs-%d;" % i)
            wait_for(lambda: wire.contains(b"ours-1999;"), 10, "the last message captured", interval=0.05)
    finally:
        for sock in (ours, theirs, *accepted, watched, other):
            sock.close()
    assert wire.drops == 0 and b"".join(wire.streams()).count(b";") == 2000
    assert not wire.contains(b"theirs-")  # dropped by the filter, before the socket
