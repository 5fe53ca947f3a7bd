"""An S3-compatible server (moto) on a free loopback port, for the object-storage tests.

usage: python _s3_server.py
Prints the port on stdout once the server accepts connections, then serves until its
standard input closes (the parent closed it, or died).
"""

from __future__ import annotations

import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
