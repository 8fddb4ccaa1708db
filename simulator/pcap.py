"""Classic pcap output (and a tiny reader for tests): IPv4/UDP and IPv4/TCP framing.

Nodes keep their IPv4 literal addresses; a node addressed by name gets a made-up 10.0.x.y
address in order of appearance. Ports are the nodes' SIP ports. IP header, UDP and TCP
checksums are computed so Wireshark/tshark do not flag the packets.

Stream messages (``simulator.streams``) are written as TCP segments of one connection each
(the opener's port is its ephemeral port): a SYN, SYN-ACK, ACK handshake at the moment the
first message is sent, then each SIP message as PSH/ACK segments of at most ``TCP_MSS``
bytes, all at the instant it is sent, with sequence and acknowledgement numbers that count
the bytes of both directions, so Wireshark reassembles and decodes SIP over TCP. What it
does not show: the time segments take (all of a message's segments carry its send time;
the model has no congestion window), separate ACKs, window updates, retransmissions (the
model has none) and the end of a connection (no FIN or RST is written).
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
IPPROTO_TCP = 6
TCP_SYN, TCP_ACK, TCP_PSH = 0x02, 0x10, 0x08
TCP_MSS = 1460  # segment payload: an Ethernet MTU of 1500 minus the IPv4 and TCP headers
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


def _ipv4(src_ip: bytes, dst_ip: bytes, protocol: int, payload: bytes, ident: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000,
                         64, protocol, 0, src_ip, dst_ip)  # fmt: skip
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def ipv4_tcp_packet(
    src_ip: bytes, dst_ip: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
    payload: bytes, ident: int = 0,
) -> bytes:  # fmt: skip
    """An IPv4 packet carrying one TCP segment (20-byte header), both checksums filled in."""
    window = 65535
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                         5 << 4, flags, window, 0, 0)  # fmt: skip
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, IPPROTO_TCP, len(header) + len(payload))
    tcp_sum = _checksum(pseudo + header + payload)
    header = header[:16] + struct.pack("!H", tcp_sum) + header[18:]
    return _ipv4(src_ip, dst_ip, IPPROTO_TCP, header + payload, ident)


class PcapWriter:
    """Writes packets as they are sent; node names map to made-up 10.x.y.z addresses."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._ips: dict[str, bytes] = {}
        self._ident = 0
        self.packets = 0
        # TCP: (connection, sending node) -> next sequence number of that direction.
        self._seq: dict[tuple[int, str], int] = {}
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
        self._record(time, packet)

    def write_tcp(
        self,
        time: float,
        source: tuple[str, Address],
        destination: tuple[str, Address],
        payload: bytes,
        connection: int,
    ) -> None:
        """Write one stream message as a TCP segment of ``connection`` (a handshake first
        when the connection is new; see the module rules)."""
        (src_node, (src_host, sport)), (dst_node, (dst_host, dport)) = source, destination
        src_ip, dst_ip = self.ip_of(src_node, src_host), self.ip_of(dst_node, dst_host)
        mine, theirs = (connection, src_node), (connection, dst_node)
        if mine not in self._seq:
            # Initial sequence numbers 0 both ways; SYN and SYN-ACK take one number each.
            for a, b, pa, pb, seq, ack, flags in (
                (src_ip, dst_ip, sport, dport, 0, 0, TCP_SYN),
                (dst_ip, src_ip, dport, sport, 0, 1, TCP_SYN | TCP_ACK),
                (src_ip, dst_ip, sport, dport, 1, 1, TCP_ACK),
            ):
                self._ident += 1
                self._record(time, ipv4_tcp_packet(a, b, pa, pb, seq, ack, flags, b"",
                                                   self._ident))  # fmt: skip
            self._seq[mine] = self._seq[theirs] = 1
        seq, ack = self._seq[mine], self._seq[theirs]
        for start in range(0, len(payload), TCP_MSS):
            chunk = payload[start : start + TCP_MSS]
            self._ident += 1
            self._record(time, ipv4_tcp_packet(src_ip, dst_ip, sport, dport, seq, ack,
                                               TCP_PSH | TCP_ACK, chunk, self._ident))  # fmt: skip
            seq += len(chunk)
        self._seq[mine] = seq

    def _record(self, time: float, packet: bytes) -> None:
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
        if total_length != len(packet) or packet[9] not in (IPPROTO_UDP, IPPROTO_TCP):
            raise ValueError("bad IPv4 length or protocol")
        src, dst = packet[12:16], packet[16:20]
        if packet[9] == IPPROTO_TCP:
            sport, dport = struct.unpack("!HH", packet[20:24])
            pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, len(packet) - 20)
            if _checksum(pseudo + packet[20:]) != 0:
                raise ValueError("bad TCP checksum")
            payload = packet[20 + (packet[32] >> 4) * 4 :]
            if payload:  # handshake segments carry nothing
                yield seconds + micros / 1e6, src, dst, sport, dport, payload
            continue
        sport, dport, udp_length, _sum = struct.unpack("!HHHH", packet[20:28])
        if udp_length != len(packet) - 20:
            raise ValueError("bad UDP length")
        pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, udp_length)
        if _checksum(pseudo + packet[20:]) != 0:
            raise ValueError("bad UDP checksum")
        yield seconds + micros / 1e6, src, dst, sport, dport, packet[28:]
