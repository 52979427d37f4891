"""A host on loopback that serves client metadata documents and key sets over real https, with a
certificate from a test CA of its own: what a client such as ChatGPT or Claude publishes."""

import datetime
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for localhost and 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Connected Todos test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class DocumentHost:
    """Serves whatever the test puts at a path, and counts the requests for each path."""

    def __init__(self, directory: Path) -> None:
        self.ca, self.cert, self.key = make_certificates(directory)
        cert, key = self.cert, self.key
        self.answers: dict[str, Answer] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[dict[str, str]] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits[self.path] = host.hits.get(self.path, 0) + 1
                host.requests.append(dict(self.headers))
                answer = host.answers.get(self.path, Answer(404, b"{}"))
                etag = answer.headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    answer = Answer(304, b"", {"ETag": etag, **answer.headers})
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def put(self, path: str, document: dict | bytes, status: int = 200, **headers: str) -> str:
        """Serve ``document`` (JSON, or raw bytes) at ``path``; its https URL."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.answers[path] = Answer(status, body, {k.replace("_", "-"): v for k, v in headers.items()})
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()


class HostileHost:
    """An https host that misbehaves below HTTP, one behaviour per host: it answers on and on, or
    drips its answer, so that only a deadline for the whole fetch and a byte budget stop it."""

    def __init__(self, documents: DocumentHost, behaviour: str) -> None:
        self.behaviour, self.stopped = getattr(self, behaviour), False
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(documents.cert, documents.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def url(self, path: str = "/client.json") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def serve(self) -> None:
        while not self.stopped:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(raw,), daemon=True).start()

    def answer(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += tls.recv(4096) or b"\r\n\r\n"
                self.behaviour(tls)
        except OSError:
            pass

    def endless_continue(self, tls: ssl.SSLSocket) -> None:
        while not self.stopped:  # http.client skips each interim answer and reads the next
            tls.sendall(b"HTTP/1.1 100 Continue\r\nX-Pad: " + b"a" * 1000 + b"\r\n\r\n")

    def endless_trailers(self, tls: ssl.SSLSocket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        tls.sendall(head + b'7\r\n{"a":1}\r\n0\r\n')
        while not self.stopped:
            tls.sendall((b"X-Trailer: " + b"t" * 1000 + b"\r\n") * 16)

    def dripped_headers(self, tls: ssl.SSLSocket) -> None:
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Drip: ")
        while not self.stopped:
            tls.sendall(b"a")
            time.sleep(0.2)

    def close(self) -> None:
        self.stopped = True
        self.listener.close()
