"""Remotes for the upload tests: a local folder, and an S3 API on loopback (moto's server)
reached through a proxy that can be stopped in the middle of a transfer."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CuttingProxy:
    """Forwards TCP to a target. `cut_after(n)` makes it drop every connection and stop listening
    once n request bytes have passed (a remote that dies mid-upload); `start()` brings it back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._limit: int | None = None
        self._sent = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.was_cut = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut_after(self, limit: int | None) -> None:
        with self._lock:
            self._limit, self._sent = limit, 0
            self.was_cut.clear()

    def stop(self) -> None:
        with self._lock:  # several pumps may cut at once
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        try:
            while data := src.recv(65536):
                if request:
                    with self._lock:
                        self._sent += len(data)
                        over = self._limit is not None and self._sent > self._limit
                    if over:
                        self.was_cut.set()
                        threading.Thread(target=self.stop, daemon=True).start()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class S3Remote:
    config: Path        # the rclone config file (0600): the only place holding the credentials
    destination: str
    secret: str
    proxy: CuttingProxy
    bucket: str

    def rclone(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["rclone", "--config", str(self.config), *args], capture_output=True, text=True,
                              timeout=120)


def s3_config(folder: Path, port: int, secret: str) -> Path:
    path = folder / "rclone.conf"
    path.write_text(f"""[moto]
type = s3
provider = Other
access_key_id = AKIATENANGDBTEST
secret_access_key = {secret}
endpoint = http://127.0.0.1:{port}
region = us-east-1
force_path_style = true
""")
    os.chmod(path, 0o600)
    return path


def new_secret() -> str:
    return "tdbS3secret" + secrets.token_hex(12)
