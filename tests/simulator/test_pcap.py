"""traffic.pcap: framing, lengths and checksums, and tshark decodes the payload as SIP."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.pcap import PcapWriter, read_pcap

SUBSCRIBE = (
    b"SUBSCRIBE sip:bob@lab.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@b2b.test>;tag=1\r\nTo: <sip:bob@lab.test>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@10.0.0.1:5060>\r\n"
    b"Event: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:alice@b2b.test>;tag=1\r\nTo: <sip:bob@lab.test>;tag=2\r\nCall-ID: c1\r\n"
    b"CSeq: 1 SUBSCRIBE\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
)


def _write(path: Path) -> None:
    with path.open("wb") as handle:
        writer = PcapWriter(handle)
        writer.write(1.25, ("b2b", ("10.0.0.1", 5060)), ("ps", ("lab.test", 5070)), SUBSCRIBE)
        writer.write(
            1.5, ("ps", ("lab.test", 5070)), ("b2b", ("10.0.0.1", 5060)), OK + b"x"
        )  # odd length: checksum padding


def test_reader_sees_packets_with_valid_checksums(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    _write(path)
    packets = list(read_pcap(path))
    assert [(p[0], p[3], p[4]) for p in packets] == [(1.25, 5060, 5070), (1.5, 5070, 5060)]
    assert packets[0][1] == packets[1][2] == bytes([10, 0, 0, 1])
    assert packets[0][2] == packets[1][1] != packets[0][1]
    assert packets[0][5] == SUBSCRIBE


def test_reader_rejects_corrupted_payload(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    _write(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        list(read_pcap(path))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_decodes_sip(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    _write(path)
    result = subprocess.run(
        ["tshark", "-r", str(path), "-o", "udp.check_checksum:TRUE",
         "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "sip.Method",
         "-e", "sip.Status-Code", "-e", "udp.checksum.status", "-e", "ip.checksum.status"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert lines[0][0] == "SUBSCRIBE"
    assert lines[1][1] == "200"
    # Wireshark's checksum status: 0 bad, 1 good, 2 unverified.
    assert all(line[2:] == ["1", "1"] for line in lines)
