#!/usr/bin/env python3
"""Packet delay and loss without `tc netem`: an NFQUEUE listener (Python stdlib only).

This kernel has no netem qdisc, so the Jepsen-style test sends the packets it wants to
slow down to an iptables `NFQUEUE` (with `--queue-bypass`: when this program is not
listening, packets pass). This program binds the queue over netfilter netlink, takes
only each packet's metadata (NFQNL_COPY_META), and answers each with a verdict: dropped
with probability `--loss`, else accepted after `--delay-ms` ± `--jitter-ms`. Run it
inside the namespace whose packets it handles (netlink is per namespace). It prints
"bound" once listening; SIGTERM ends it (packets still queued are then dropped by the
kernel, like lost ones). At most MAX_HELD verdicts wait at once; past that, packets are
accepted at once, so memory stays bounded.
"""

import argparse
import heapq
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_DROP = 0
NF_ACCEPT = 1
MAX_HELD = 4096


def attr(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    pad = (4 - length % 4) % 4
    return struct.pack("=HH", length, kind) + payload + b"\0" * pad


def message(msg_type, flags, seq, queue, body):
    """A netlink message with an nfgenmsg header (family AF_UNSPEC, version 0)."""
    nfgen = struct.pack("=BBH", 0, 0, socket.htons(queue))
    payload = nfgen + body
    header = struct.pack("=IHHII", 16 + len(payload), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags,
                         seq, 0)
    return header + payload


def parse_attrs(data):
    out = {}
    i = 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & 0x7FFF] = data[i + 4:i + length]
        i += (length + 3) & ~3
    return out


def check_ack(sock):
    data = sock.recv(65536)
    length, msg_type = struct.unpack_from("=IH", data, 0)
    if msg_type == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        if err != 0:
            raise OSError(-err, f"netfilter queue config refused: errno {-err}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    bind = attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))
    sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, 1, args.queue, bind))
    check_ack(sock)
    params = attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0xFFFF, NFQNL_COPY_META))
    sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, 2, args.queue, params))
    check_ack(sock)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("bound", flush=True)

    held = []  # (release time, seq, packet id)
    seq = 0
    counts = {"accepted": 0, "dropped": 0}

    def verdict(packet_id, value):
        hdr = attr(NFQA_VERDICT_HDR, struct.pack(">II", value, packet_id))
        try:
            sock.send(message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, args.queue, hdr))
        except OSError:
            pass

    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, pid = heapq.heappop(held)
            verdict(pid, NF_ACCEPT)
            counts["accepted"] += 1
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = sock.recv(65536)
        except OSError:
            continue  # ENOBUFS: the kernel dropped notifications; packets time out as lost
        i = 0
        while i + 16 <= len(data):
            length, msg_type = struct.unpack_from("=IH", data, i)
            if length < 16:
                break
            if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                attrs = parse_attrs(data[i + 20:i + length])
                hdr = attrs.get(NFQA_PACKET_HDR)
                if hdr and len(hdr) >= 4:
                    (packet_id,) = struct.unpack_from(">I", hdr, 0)
                    if rng.random() < args.loss:
                        verdict(packet_id, NF_DROP)
                        counts["dropped"] += 1
                    elif len(held) >= MAX_HELD:
                        verdict(packet_id, NF_ACCEPT)
                        counts["accepted"] += 1
                    else:
                        delay = args.delay_ms + rng.uniform(-args.jitter_ms, args.jitter_ms)
                        seq += 1
                        release = time.monotonic() + max(0.0, delay) / 1000.0
                        heapq.heappush(held, (release, seq, packet_id))
            i += (length + 3) & ~3
    for _, _, pid in held:
        verdict(pid, NF_ACCEPT)
    print(f"accepted={counts['accepted']} dropped={counts['dropped']}", file=sys.stderr)


if __name__ == "__main__":
    main()
