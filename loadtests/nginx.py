"""nginx in front of the pack's own replicas: the reference the gateway is measured against.

The benchmark's own nginx process (Debian package ``nginx-light`` or
``nginx``), with a generated configuration in a temporary folder, in the
foreground (``daemon off``), on loopback only. It routes the public prefixes
as the gateway does (``/srvi/user/42`` → i's ``/user/42``) to the replicas the
control plane lists, balancing on the fewest active connections over pooled
keep-alive connections, and logs no access line.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class NginxError(RuntimeError):
    """nginx is missing, refused its configuration or did not start."""


def configuration(root: Path, port: int, upstreams: Mapping[str, Sequence[str]], workers: int) -> str:
    """nginx.conf: ``upstreams`` maps a public prefix (``/srvi``) to its replicas' base URLs."""
    if os.geteuid() == 0:
        # As root, nginx switches its workers to a user; nobody's own group has a different name per distribution.
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
    else:
        user = ""
    blocks, locations = [], []
    for prefix, urls in sorted(upstreams.items()):
        if not urls:
            raise NginxError(f"no replica to put behind {prefix}")
        name = "fn_" + prefix.strip("/")
        servers = "".join(f"    server {url.removeprefix('http://').rstrip('/')};\n" for url in urls)
        blocks.append(f"  upstream {name} {{\n    least_conn;\n{servers}    keepalive 64;\n  }}\n")
        locations.append(f"    location {prefix}/ {{\n      proxy_pass http://{name}/;\n    }}\n")
    temp = "".join(f"  {kind}_temp_path {root / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"{user}worker_processes {workers};\n"
        f"pid {root / 'nginx.pid'};\n"
        f"error_log {root / 'error.log'} warn;\n"
        "events {\n  worker_connections 4096;\n}\n"
        "http {\n"
        "  access_log off;\n"
        "  keepalive_requests 100000;\n"
        f"{temp}"
        "  proxy_http_version 1.1;\n"
        '  proxy_set_header Connection "";\n'
        + "".join(blocks)
        + f"  server {{\n    listen 127.0.0.1:{port} backlog=2048;\n"
        + "".join(locations)
        + "  }\n}\n"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Nginx:
    """One nginx master (and its workers) of our own; a context manager."""

    def __init__(self, upstreams: Mapping[str, Sequence[str]], workers: int = 1) -> None:
        self.upstreams = upstreams
        self.workers = workers
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
        if binary is None:
            raise NginxError("nginx is not installed (Debian: apt-get install nginx-light)")
        self.root = Path(tempfile.mkdtemp(prefix="tombola-nginx-"))
        self.root.chmod(0o755)  # the workers may run as nobody
        conf = self.root / "nginx.conf"
        conf.write_text(configuration(self.root, self.port, self.upstreams, self.workers))
        log = self.root / "error.log"
        command = [binary, "-p", str(self.root), "-e", str(log), "-c", str(conf), "-g", "daemon off;"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.stop()
                raise NginxError(f"nginx did not start: {tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop nginx (SIGQUIT: graceful), SIGKILL if it lingers; remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
