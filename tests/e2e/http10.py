#!/usr/bin/env python3
"""One HTTP/1.0 GET / to a VIP, read until the server closes (e2e tests).

curl may close before the server's FIN and leave the client port in
TIME_WAIT; this client always lets the server close first (or, with --rst,
closes with an RST), so a test can use the same client port again at once.

  http10.py VIP [--port P] [--src ADDR] [--rst] [--timeout S]

Prints the response body (stripped).  Exit 0 on status 200, 1 on another
status, 2 on a socket error (printed as "fail:<ExceptionName>").
The health test's prober imports get().
"""
import argparse
import socket
import struct
import sys


def get(vip, local_port=0, src="", timeout=5.0, rst=False):
    """(status_ok, body) of GET http://VIP/ from src:local_port (0: any)."""
    s = socket.socket()
    try:
        if local_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if local_port or src:
            s.bind((src, local_port))
        s.settimeout(timeout)
        s.connect((vip, 80))
        s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    return status[1:2] == [b"200"], body.decode(errors="replace").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vip")
    ap.add_argument("--port", type=int, default=0, help="client port (default: any)")
    ap.add_argument("--src", default="", help="client address (default: any)")
    ap.add_argument("--rst", action="store_true", help="close with an RST (SO_LINGER 0)")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    try:
        ok, body = get(a.vip, a.port, a.src, a.timeout, a.rst)
    except OSError as e:
        print("fail:" + type(e).__name__)
        return 2
    print(body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
