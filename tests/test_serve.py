"""The playground's server as a server (``python -m sbir_core.browser serve``), with raw HTTP: it answers only
with its token and only to loopback Host names, and SIGTERM or Ctrl-C ends voila and its kernels with it.
No browser and no trained model needed: a kernel starts whatever the page then shows."""

import contextlib
import http.client
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest

from sbir_core.browser import _free_port

WEBSOCKET = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


class Server:
    """``python -m sbir_core.browser serve`` in a subprocess, up once it has printed its URL."""

    def __init__(self, folder, timeout: float = 60.0, args=()):
        self.port = _free_port()
        self.out = folder / f"serve-{self.port}.out"
        with open(self.out, "w") as out:
            cmd = [sys.executable, "-m", "sbir_core.browser", "serve", f"--port={self.port}", "--no-browser", *args]
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "the playground is at" not in self.out.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.out.read_text()[-3000:]
            time.sleep(0.2)
        self.url = self.out.read_text().split("the playground is at ", 1)[1].split()[0]
        self.token = parse_qs(urlsplit(self.url).query)["token"][0]

    def connect(self, path: str, host: str | None = None, headers: dict | None = None) -> http.client.HTTPResponse:
        """GET ``path`` with ``Host: host`` (the server's own by default); the response, its body unread."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", path, headers={"Host": host or f"127.0.0.1:{self.port}", **(headers or {})})
        return conn.getresponse()

    def get(self, path: str, host: str | None = None, headers: dict | None = None) -> int:
        response = self.connect(path, host, headers)
        response.read()
        return response.status

    def websocket(self, host: str | None = None, token: str | None = None) -> int:
        """The status of a kernel websocket upgrade (to a kernel that does not exist: 404 once let through)."""
        host = host or f"127.0.0.1:{self.port}"
        path = f"/api/kernels/{uuid.uuid4()}/channels" + (f"?token={token}" if token else "")
        return self.get(path, host, WEBSOCKET | {"Origin": f"http://{host}"})

    def kernels(self) -> list[psutil.Process]:
        """The kernel processes under the server now (one ending as it is listed is left out)."""
        out = []
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):  # NoSuchProcess covers zombies too
                if "ipykernel" in " ".join(p.cmdline()):
                    out.append(p)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


def test_the_server_answers_only_with_its_token(server):
    assert server.token and len(server.token) >= 32
    for token in ("", "?token=wrong"):
        response = server.connect("/" + token)
        assert response.status == 302 and response.getheader("Location").startswith("/login")
        assert server.get(f"/api/kernels/{uuid.uuid4()}{token}") == 403
    assert server.websocket() == 403 and server.websocket(token="wrong") == 403
    assert server.kernels() == []  # nothing above started one
    assert server.websocket(token=server.token) == 404  # let through: the kernel does not exist


def test_the_server_answers_only_to_loopback_host_names(server):
    """DNS rebinding: a page of evil.example whose name now points to 127.0.0.1 sends its own Host and Origin."""
    for host in (f"evil.example:{server.port}", "evil.example", f"127.0.0.1.evil.example:{server.port}"):
        assert server.get(f"/?token={server.token}", host) == 403
        assert server.websocket(host, server.token) == 403
    assert server.websocket(f"localhost:{server.port}", server.token) == 404
    assert server.kernels() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_voila_and_its_kernels(tmp_path, signum):
    """A page opened with the token starts a kernel (in a session of its own); the signal to the command ends
    voila, the kernel and every other process under it."""
    s = Server(tmp_path)
    tree = []
    try:
        page = s.connect(f"/?token={s.token}")
        assert page.status == 200
        deadline = time.monotonic() + 60
        while not s.kernels():
            assert time.monotonic() < deadline, "no kernel started"
            time.sleep(0.2)
        tree = psutil.Process(s.proc.pid).children(recursive=True)
        s.proc.send_signal(signum)
        assert s.proc.wait(30) == 0
        _, alive = psutil.wait_procs(tree, timeout=5)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == [], alive
    finally:
        s.stop()
        for p in tree:  # what a failure above left running
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_the_culler_is_configured_for_pages_no_longer_open():
    from sbir_core.browser import CULL_IDLE_S, voila_config

    cull = voila_config()["MappingKernelManager"]
    assert cull["cull_idle_timeout"] == CULL_IDLE_S and cull["cull_interval"] == 60 and cull["cull_connected"] is False
    assert voila_config(2)["MappingKernelManager"]["cull_interval"] == 1
    assert voila_config(0)["MappingKernelManager"]["cull_idle_timeout"] == 0  # jupyter_server: never cull
    with pytest.raises(ValueError):
        voila_config(-1)
    # that closed pages' kernels are ended: tests/test_browser.py, three pages opened and closed in Chromium
