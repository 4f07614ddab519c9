"""A moto server in its own process (as in the demo), for tests where workers run side by side or
in other processes; plus a TCP proxy that stalls its first connections (a network that hangs)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager, suppress

import boto3

from edge_package.contracts import observation_table_definition
from tests.isolation import free_port  # this worker's own ports

REGION = "eu-west-1"


@contextmanager
def moto_server():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()


def clients(url: str) -> dict:
    return {
        name: boto3.client(name, region_name=REGION, endpoint_url=url)
        for name in ("s3", "dynamodb", "sqs", "cloudwatch")
    }


def create_stack(url: str, bucket: str, table: str, queue: str) -> tuple[dict, str]:
    reset(url)
    made = clients(url)
    made["s3"].create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    made["dynamodb"].create_table(**observation_table_definition(table))
    queue_url = made["sqs"].create_queue(QueueName=queue)["QueueUrl"]
    return made, queue_url


class StallingProxy:
    """Forwards TCP to `target_port`, except that its first `stall` connections are accepted and
    never answered: the client sees exactly what a hung network gives it (a read timeout)."""

    def __init__(self, target_port: int, stall: int):
        self.target_port, self.stall = target_port, stall
        self.accepted = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.stall:
                self.held.append(conn)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()
