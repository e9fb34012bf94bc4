"""Talking to a real gateway the way the network does: the one place for raw-socket helpers.

Every test client in aiohttp or urllib writes a request's head and body at once, so a server that
reads "whatever arrived" looks correct.  These helpers send requests in pieces with pauses, stall
half-way, leave mid-request or mid-response (with a TCP reset or a clean FIN), and read answers
byte for byte, so tests see what a real client, a slow network or an attacker would.

    with RawClient(port) as client:
        client.send_pieces(request_bytes("POST", "/v1/x", body=big), pieces=5, pause=0.05)
        answer = client.read_response()
        assert answer.status == 200

    with LiveGateway(tmp_path) as gw:           # real ``llmgate serve`` + ``llmgate fake-upstream``
        gw.put("routes/1", {"uri": "/*", "upstream": gw.upstream()})
        gw.fake_requests()[-1]["body_sha256"]   # what the upstream received, hashed

Nothing here is asynchronous: tests that need many clients at once open many sockets (they are
cheap) or use threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.processes import Running, fake_upstream_process, llmgate_serve
from tests.support import ADMIN_KEY

CRLF = b"\r\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_bytes(
    method: str,
    target: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    body: bytes | None = None,
    *,
    host: str | None = "gateway.test",
    version: str = "HTTP/1.1",
    chunked: bool = False,
    chunk_size: int = 16 * 1024,
) -> bytes:
    """A whole HTTP/1.x request as bytes, exactly as given (no normalisation of ``target``).

    ``Content-Length`` is added for a body unless ``chunked`` (then the body is framed in chunks
    of ``chunk_size``) or the caller set a length or Transfer-Encoding header itself.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    names = {name.lower() for name, _ in pairs}
    if host is not None and "host" not in names:
        pairs.insert(0, ("Host", host))
    if body is not None and not ({"content-length", "transfer-encoding"} & names):
        if chunked:
            pairs.append(("Transfer-Encoding", "chunked"))
        else:
            pairs.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n".encode("latin-1")
    head += b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in pairs)
    head += CRLF
    if body is None:
        return head
    if not chunked:
        return head + body
    framed = b"".join(
        f"{len(body[i : i + chunk_size]):x}\r\n".encode() + body[i : i + chunk_size] + CRLF
        for i in range(0, len(body), chunk_size)
    )
    return head + framed + b"0\r\n\r\n"


def split(data: bytes, pieces: int) -> list[bytes]:
    """``data`` cut into ``pieces`` parts of about equal size (none empty unless data is)."""
    pieces = max(1, min(pieces, len(data) or 1))
    size, extra = divmod(len(data), pieces)
    parts, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        parts.append(data[start:end])
        start = end
    return parts


@dataclass
class Response:
    """One HTTP response as read off the wire."""

    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    # The body's pieces as they were read (one per chunk for chunked bodies): streaming tests
    # look at when and how the body arrived.
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    def json(self) -> Any:
        return json.loads(self.body)


class ConnectionClosed(Exception):
    """The server closed the connection (cleanly or with a reset) before a whole response."""


class RawClient:
    """One TCP connection to a server, driven byte by byte.

    ``timeout`` bounds every single socket read (a test must never hang on a server that does
    not answer); pass a larger one where a slow answer is the point.  ``rcvbuf`` shrinks the
    receive buffer (set before connecting, so the window is small from the start): a client
    that stops reading then stalls the server's writes after a few KB.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        """``tls``: the connection is wrapped (handshake done here) with SNI ``server_name``."""
        if rcvbuf is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_name)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self._buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- sending ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_pieces(self, data: bytes, pieces: int = 4, pause: float = 0.05) -> None:
        """Send ``data`` in ``pieces`` writes with ``pause`` seconds between them (each piece
        is its own TCP segment: Nagle is off)."""
        for i, part in enumerate(split(data, pieces)):
            if i:
                time.sleep(pause)
            self.sock.sendall(part)

    def send_request(
        self, method: str, target: str, *, pieces: int = 1, pause: float = 0.05, **kwargs: Any
    ) -> None:
        self.send_pieces(request_bytes(method, target, **kwargs), pieces, pause)

    # --- leaving ---------------------------------------------------------------------------

    def abort(self) -> None:
        """Leave with a TCP reset (SO_LINGER 0), as a crashed client or a killed process does."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Leave cleanly (FIN)."""
        with contextlib.suppress(OSError):
            self.sock.close()

    def shutdown_write(self) -> None:
        """Half-close: the server sees the end of the request stream, the client still reads."""
        self.sock.shutdown(socket.SHUT_WR)

    # --- reading ---------------------------------------------------------------------------

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self._buffer += data
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if not self._fill():
                raise ConnectionClosed(f"closed before {marker!r}; got {self._buffer[:200]!r}")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ConnectionClosed(f"closed with {len(self._buffer)} of {size} bytes")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_head(self) -> tuple[int, str, str, list[tuple[str, str]]]:
        """Status line and headers of the next response (skipping ``100 Continue``)."""
        while True:
            raw = self._read_until(b"\r\n\r\n").decode("latin-1")
            status_line, *lines = raw.split("\r\n")
            version, status, *reason = status_line.split(" ", 2)
            headers = [
                (name.strip(), value.strip())
                for name, _, value in (line.partition(":") for line in lines)
            ]
            if int(status) != 100:
                return int(status), reason[0] if reason else "", version, headers

    def read_response(self, method: str = "GET") -> Response:
        """The next whole response; its body framed by Content-Length, chunks, or the close."""
        status, reason, version, headers = self.read_head()
        response = Response(status, reason, version, headers, b"")
        length = response.header("Content-Length")
        encoding = (response.header("Transfer-Encoding") or "").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return response
        if "chunked" in encoding:
            while True:
                size_line = self._read_until(CRLF)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self._read_until(CRLF)  # the empty trailer section
                    break
                chunk = self._read_exactly(size)
                self._read_exactly(2)
                response.chunks.append(chunk)
            response.body = b"".join(response.chunks)
        elif length is not None:
            response.body = self._read_exactly(int(length))
            response.chunks = [response.body]
        else:
            while self._fill():
                pass
            response.body, self._buffer = self._buffer, b""
            response.chunks = [response.body]
        return response

    def read_chunk(self) -> bytes | None:
        """The next chunk of a chunked body whose head ``read_head`` already read (None at the
        end): for tests that leave mid-stream."""
        size = int(self._read_until(CRLF).split(b";")[0], 16)
        if size == 0:
            self._read_until(CRLF)
            return None
        chunk = self._read_exactly(size)
        self._read_exactly(2)
        return chunk

    def drain(self, limit: float, pace: tuple[int, float] | None = None) -> tuple[int, bool]:
        """Read until the server ends the connection or ``limit`` seconds pass: the bytes read
        (what was buffered included) and whether it ended with a reset (True) rather than a
        clean close or the time limit (False).  ``pace`` (bytes, seconds): read at most that
        many bytes, then sleep, like a slow client."""
        received = len(self._buffer)
        self._buffer = b""
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(pace[0] if pace else 65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not data:
                return received, False
            received += len(data)
            if pace:
                time.sleep(pace[1])
        return received, False

    def is_closed_by_peer(self, wait: float = 1.0) -> bool:
        """Whether the server closed this connection within ``wait`` seconds (EOF or reset),
        with no bytes sent meanwhile."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b""


class KeptAlive:
    """Many requests over keep-alive connections, one at a time: a new connection whenever the
    server closed the last one (``Connection: close``, as after ``keepalive_requests``).

        with KeptAlive(port) as session:
            for n in range(5000):
                assert session.request(request_bytes("GET", f"/k/{n}")).status == 200
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._client: RawClient | None = None

    def request(self, raw: bytes) -> Response:
        if self._client is None:
            self._client = RawClient(self.port, timeout=self.timeout)
        self._client.send(raw)
        answer = self._client.read_response(raw.split(b" ", 1)[0].decode("latin-1"))
        if (answer.header("Connection") or "").lower() == "close":
            self.close()
        return answer

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> KeptAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exchange(port: int, raw: bytes, *, pieces: int = 1, pause: float = 0.05) -> Response:
    """Send one raw request on a new connection and read the answer."""
    with RawClient(port) as client:
        client.send_pieces(raw, pieces, pause)
        return client.read_response(raw.split(b" ", 1)[0].decode("latin-1"))


def http_json(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """A plain JSON call (urllib): status and decoded body (text when it is not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class FakeUpstream:
    """One more ``llmgate fake-upstream`` process that a test can stop (a dead node: its port
    refuses connections) and start again on the same port (the node recovered)."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port = 0
        self._stack: contextlib.ExitStack | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeUpstream:
        assert self._stack is None
        stack = contextlib.ExitStack()
        self.port = stack.enter_context(fake_upstream_process(self.port or None, *self.args))
        self._stack = stack
        return self

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fake_requests_at(address: str) -> list[dict[str, Any]]:
    """What the fake upstream at ``address`` ("127.0.0.1:port") received, oldest first."""
    return http_json("GET", f"http://{address}/__fake/requests")[1]["requests"]


def set_fake_knobs(address: str, **knobs: Any) -> None:
    """Change a running fake's process-wide knobs (``status``, ``drop``, ``latency_ms``,
    ``stream_delay_ms``); ``reset_fake_knobs`` goes back to its start-up ones."""
    status, answer = http_json("PUT", f"http://{address}/__fake/knobs", knobs)
    assert status == 200, answer


def reset_fake_knobs(address: str) -> None:
    status, answer = http_json("DELETE", f"http://{address}/__fake/knobs")
    assert status == 200, answer


def connections_to(pid: int, port: int) -> int:
    """How many established TCP connections process ``pid`` holds to remote ``port`` on this
    machine (an upstream's keep-alive connections, seen from the gateway)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                held += 1
    return held


class LiveGateway:
    """A real ``llmgate serve`` (SQLite in ``workdir``) and a real ``llmgate fake-upstream``.

    ``serve_args``/``env`` go to ``llmgate serve``; ``fake_args`` to the fake, which listens
    on ``fake_port`` when given (so a ``--standalone`` file written beforehand can point at
    it).  ``put`` and ``delete`` go through the admin API; with admin and data plane in one
    process (the default) the change is live when they return.
    """

    def __init__(
        self,
        workdir: Path,
        *serve_args: str,
        env: dict[str, str] | None = None,
        fake_args: Sequence[str] = (),
        database_url: str | None = None,
        fake_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.serve_args = serve_args
        self.env = env
        self.fake_args = tuple(fake_args)
        self.database_url = database_url
        self._stack = contextlib.ExitStack()
        self.fake_port = fake_port or 0
        self.running: Running | None = None

    def __enter__(self) -> LiveGateway:
        try:
            self.fake_port = self._stack.enter_context(
                fake_upstream_process(self.fake_port or None, *self.fake_args)
            )
            self.running = self._stack.enter_context(
                llmgate_serve(
                    self.workdir,
                    *self.serve_args,
                    env=self.env,
                    database_url=self.database_url,
                )
            )
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def gw(self) -> Running:
        assert self.running is not None
        return self.running

    @property
    def proxy_port(self) -> int:
        return self.gw.proxy_port

    @property
    def admin_port(self) -> int:
        return self.gw.admin_port

    @property
    def fake_address(self) -> str:
        return f"127.0.0.1:{self.fake_port}"

    def upstream(self, **extra: Any) -> dict[str, Any]:
        """An inline upstream pointing at the fake."""
        return {"type": "roundrobin", "nodes": {self.fake_address: 1}, **extra}

    def admin(self, method: str, path: str, body: Any = None, key: str = ADMIN_KEY) -> Any:
        """An admin call; returns (status, decoded body)."""
        return http_json(
            method,
            f"{self.gw.admin_url}/apisix/admin/{path}",
            body,
            {"X-API-KEY": key, "Content-Type": "application/json"},
        )

    def put(self, path: str, body: Any) -> Any:
        status, answer = self.admin("PUT", path, body)
        assert status in (200, 201), (status, answer)
        return answer

    def delete(self, path: str) -> None:
        status, answer = self.admin("DELETE", path)
        assert status == 200, (status, answer)

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """A data-plane GET: status, decoded body (the fake echoes what it received; text when
        it is not JSON), headers."""
        request = urllib.request.Request(f"{self.gw.proxy_url}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, raw, head = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, head = err.code, err.read(), dict(err.headers)
        try:
            return status, json.loads(raw), head
        except ValueError:
            return status, raw.decode(errors="replace"), head

    def fake_requests(self) -> list[dict[str, Any]]:
        """What the fake upstream received, oldest first (with ``raw_path``, ``body_length``
        and ``body_sha256`` of each request)."""
        return http_json("GET", f"http://{self.fake_address}/__fake/requests")[1]["requests"]

    def clear_fake(self) -> None:
        http_json("DELETE", f"http://{self.fake_address}/__fake/requests")

    def log(self) -> str:
        return self.gw.output()

    def metrics(self) -> str:
        """The Prometheus scrape of the node (the metrics listener)."""
        url = f"http://127.0.0.1:{self.gw.metrics_port}/apisix/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return str(resp.read().decode())

    def metric_series(self) -> dict[str, float]:
        """One scrape as ``{'name{labels}': value}``."""
        found = {}
        for line in self.metrics().splitlines():
            if line and not line.startswith("#"):
                key, _, number = line.rpartition(" ")
                found[key] = float(number)
        return found


def metric_total(metrics: Mapping[str, float], name: str, **labels: str) -> float:
    """The sum of the series of ``name`` (in a ``LiveGateway.metric_series()`` scrape)
    carrying ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        number
        for key, number in metrics.items()
        if key.partition("{")[0] == name and all(w in key for w in wanted)
    )


def wait_for(check: Any, what: str, timeout: float = 10.0) -> Any:
    """Poll ``check()`` until it returns something truthy (metrics are sampled and usage
    flushed about every second)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


@contextlib.contextmanager
def live_gateway(workdir: Path, *serve_args: str, **kwargs: Any) -> Iterator[LiveGateway]:
    with LiveGateway(workdir, *serve_args, **kwargs) as live:
        yield live


# --- TLS: certificates made in the test -------------------------------------------------------


@dataclass
class TestCA:
    """A certificate authority made on the spot (EC P-256), issuing server certificates.

    ``context(...)`` is a client context trusting only this CA."""

    __test__ = False  # not a pytest class

    pem: str = ""
    _key: Any = None
    _cert: Any = None

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmgate test CA")])
        now = _utc_now()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _days(2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, *names: str, organization: str = "llmgate") -> tuple[str, str]:
        """(certificate PEM, private key PEM) for ``names`` (the first is the common name)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            ]
        )
        now = _utc_now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _days(2))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.pem)
        return context


def _utc_now() -> Any:
    import datetime

    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)


def _days(n: int) -> Any:
    import datetime

    return datetime.timedelta(days=n)


def peer_subject(port: int, context: ssl.SSLContext, server_name: str) -> dict[str, str]:
    """The subject (CN, O) of the certificate a TLS server shows for SNI ``server_name``."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return {key: value for rdn in cert["subject"] for key, value in rdn}
