"""Starting a real gateway process (mitmdump or mitmweb with the addon): for the CLI, the demo and tests.

Readiness is the gateway answering `/__health` itself, checked against the process still being alive,
never a fixed sleep.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import weakref
import time
from dataclasses import dataclass

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mitmproxy_script.py")


class GatewayStartError(RuntimeError):
    pass


def config_on_port(document: dict, port: int) -> dict:
    """A config moved to `port`: its `port`, and backends that call the gateway itself
    (`http://localhost:<port>`, as the Descope config does), follow it."""
    old = document.get("port", 8080)
    text = re.sub(rf"\b(localhost|127\.0\.0\.1):{old}\b", lambda m: f"{m.group(1)}:{port}", json.dumps(document))
    moved = json.loads(text)
    moved["port"] = port
    return moved


def read_config_document(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        if path.endswith((".yml", ".yaml")):
            import yaml
            return yaml.safe_load(f)
        return json.load(f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def mitm_executable(web: bool = False) -> str:
    """The mitmdump/mitmweb next to this interpreter (the venv's), else the one on PATH."""
    name = "mitmweb" if web else "mitmdump"
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(beside):
        return beside
    found = shutil.which(name)
    if not found:
        raise GatewayStartError(f"{name} not found: install mitmproxy in this environment")
    return found


def mitmweb_warning() -> str | None:
    """mitmweb before 12 serves an unauthenticated web API (CVE-2025-23217): say so whenever we start it."""
    from mitmproxy.version import VERSION

    if int(VERSION.split(".")[0]) >= 12:
        return None
    return (f"WARNING: mitmproxy {VERSION}'s mitmweb API is unauthenticated (CVE-2025-23217): anything that can reach "
            "its web port can read flows, including tokens. Keep it on 127.0.0.1, or use Python 3.12+ "
            "(mitmproxy 12) and set web_password.")


def gateway_command(config_path: str, port: int, *, listen_host: str = "127.0.0.1", web: bool = False,
                    debug: bool = False, sets: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> list[str]:
    command = [mitm_executable(web), "-s", SCRIPT, "--mode", f"reverse:http://127.0.0.1:{port}"]
    if listen_host:
        command += ["--listen-host", listen_host]
    command += [
        "--listen-port", str(port),
        "--set", f"krakend_config={os.path.abspath(config_path)}",
        "--set", "connection_strategy=lazy",
    ]
    if debug:
        command += ["--set", "krakend_debug=true"]
    if web:
        command += ["--set", "web_host=127.0.0.1"]
    for item in sets:
        command += ["--set", item]
    return command + list(extra)


@dataclass
class GatewayProcess:
    command: list[str]
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None
    log_path: str = ""  # default: a temporary file, removed when this object goes away

    def __post_init__(self) -> None:
        if not self.log_path:
            fd, self.log_path = tempfile.mkstemp(prefix="krakend-mitm-", suffix=".log")
            os.close(fd)
            weakref.finalize(self, _remove_quietly, self.log_path)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "GatewayProcess":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready = the gateway itself answers. mitmproxy 12 may accept connections before the -s script
        has loaded, so a TCP connect alone would race the addon."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayStartError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            if self._gateway_answers():
                return
            time.sleep(0.05)  # poll interval while the process is still starting
        self.stop()
        raise GatewayStartError(f"gateway not ready on {self.port} after {timeout} s:\n{self.log()}")

    def _gateway_answers(self) -> bool:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            connection.request("GET", "/__health")
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        # /__health answers 200 (or, when disabled, the router's 404 carrying X-Krakend)
        return response.status == 200 or response.getheader("X-Krakend") is not None

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            return self.process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return self.process.wait(5)

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
