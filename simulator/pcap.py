"""Classic pcap output (and a tiny reader for tests): IPv4/UDP framing, made-up addresses.

Nodes keep their IPv4 literal addresses; a node addressed by name gets a made-up 10.0.x.y
address in order of appearance. Ports are the nodes' SIP ports. IP header and UDP checksums are
computed so Wireshark/tshark do not flag the packets.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

Address = tuple[str, int]

PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link-layer header
IPPROTO_UDP = 17
SNAPLEN = 65535


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    result: int = ~total & 0xFFFF
    return result


def ipv4_udp_packet(
    src_ip: bytes, dst_ip: bytes, sport: int, dport: int, payload: bytes, ident: int = 0
) -> bytes:
    """An IPv4 packet carrying one UDP datagram, both checksums filled in."""
    udp_length = 8 + len(payload)
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, IPPROTO_UDP, udp_length)
    udp_header = struct.pack("!HHHH", sport, dport, udp_length, 0)
    udp_sum = _checksum(pseudo + udp_header + payload) or 0xFFFF  # 0 means "no checksum"
    udp = struct.pack("!HHHH", sport, dport, udp_length, udp_sum) + payload
    total_length = 20 + len(udp)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total_length,
        ident & 0xFFFF,
        0x4000,
        64,
        IPPROTO_UDP,
        0,
        src_ip,
        dst_ip,
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


class PcapWriter:
    """Writes packets as they are sent; node names map to made-up 10.x.y.z addresses."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._ips: dict[str, bytes] = {}
        self._ident = 0
        self.packets = 0
        stream.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))

    def ip_of(self, node: str, host: str = "") -> bytes:
        """The node's own address when it is an IPv4 literal (so the capture agrees with the
        Via and Contact headers), else a made-up one in 10.0.0.0/16."""
        ip = self._ips.get(node)
        if ip is None:
            try:
                ip = ipaddress.IPv4Address(host).packed
            except ValueError:
                index = len(self._ips) + 1
                ip = bytes([10, 0, index // 250, index % 250 + 1])
            self._ips[node] = ip
        return ip

    def write(
        self,
        time: float,
        source: tuple[str, Address],
        destination: tuple[str, Address],
        payload: bytes,
    ) -> None:
        """Write one datagram; ``source``/``destination`` are (node name, (host, port))."""
        self._ident += 1
        (src_node, (src_host, sport)), (dst_node, (dst_host, dport)) = source, destination
        packet = ipv4_udp_packet(
            self.ip_of(src_node, src_host),
            self.ip_of(dst_node, dst_host),
            sport,
            dport,
            payload,
            self._ident,
        )
        seconds = int(time)
        micros = round((time - seconds) * 1_000_000)
        if micros >= 1_000_000:
            seconds, micros = seconds + 1, micros - 1_000_000
        length = len(packet)
        self._stream.write(struct.pack("<IIII", seconds, micros, min(length, SNAPLEN), length))
        self._stream.write(packet[:SNAPLEN])
        self.packets += 1


def read_pcap(path: str | Path) -> Iterator[tuple[float, bytes, bytes, int, int, bytes]]:
    """Yield (time, src_ip, dst_ip, sport, dport, payload), checking lengths and checksums."""
    data = Path(path).read_bytes()
    magic, _major, _minor, _zone, _sig, _snap, linktype = struct.unpack("<IHHiIII", data[:24])
    if magic != PCAP_MAGIC or linktype != LINKTYPE_RAW:
        raise ValueError("not a raw-IPv4 microsecond pcap")
    offset = 24
    while offset < len(data):
        seconds, micros, caplen, length = struct.unpack("<IIII", data[offset : offset + 16])
        offset += 16
        packet = data[offset : offset + caplen]
        offset += caplen
        if caplen != length or len(packet) != caplen:
            raise ValueError("truncated packet")
        if _checksum(packet[:20]) != 0:
            raise ValueError("bad IPv4 header checksum")
        total_length = struct.unpack("!H", packet[2:4])[0]
        if total_length != len(packet) or packet[9] != IPPROTO_UDP:
            raise ValueError("bad IPv4 length or protocol")
        src, dst = packet[12:16], packet[16:20]
        sport, dport, udp_length, _sum = struct.unpack("!HHHH", packet[20:28])
        if udp_length != len(packet) - 20:
            raise ValueError("bad UDP length")
        pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, udp_length)
        if _checksum(pseudo + packet[20:]) != 0:
            raise ValueError("bad UDP checksum")
        yield seconds + micros / 1e6, src, dst, sport, dport, packet[28:]
