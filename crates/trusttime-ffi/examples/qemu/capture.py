#!/usr/bin/env python3
"""Captures one NTP exchange with each server given, for the QEMU firmware to replay.

    capture.py HOST:PORT [HOST:PORT...] > replies.h

Request i carries the transmit timestamp (the library's cookie) COOKIE_BASE + i, which is
what the firmware passes as `rand` to its i-th trusttime_poll_transmit call, so the replies
echo the firmware's own cookies. The header records the wall clock when each request was sent
and the round trip, so the firmware can replay the exchange at the same instants.
"""
import socket
import sys
import time

COOKIE_BASE = 0x5452_5553_5454_0000

def main():
    servers = sys.argv[1:]
    rows = []
    for i, hp in enumerate(servers):
        host, port = hp.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        req = bytearray(48)
        req[0] = 0x23  # version 4, client
        req[40:48] = (COOKIE_BASE + i).to_bytes(8, "big")
        t1 = time.time_ns()
        m1 = time.monotonic_ns()
        s.sendto(bytes(req), (host, int(port)))
        reply, _ = s.recvfrom(1024)
        rtt = time.monotonic_ns() - m1
        rows.append((hp, t1, rtt, reply))
    print("/* Captured by capture.py from %d NTP servers; do not edit. */" % len(rows))
    print("#define CAPTURED_SERVERS %d" % len(rows))
    print("#define CAPTURED_COOKIE_BASE 0x%016xull" % COOKIE_BASE)
    print("static const struct captured { const char *server; int64_t sent_wall_ns; uint64_t rtt_ns; uint8_t reply[48]; } captured[] = {")
    for hp, t1, rtt, reply in rows:
        print('  {"%s", %dll, %dull, {%s}},' % (hp, t1, rtt, ", ".join("0x%02x" % b for b in reply[:48])))
    print("};")

main()
