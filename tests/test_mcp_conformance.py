"""The official MCP conformance suite (@modelcontextprotocol/conformance, pinned by
tests/mcp_conformance/run.sh), run against /mcp: the scenarios that apply to a server
with tools of its own, in 2025-11-25 and 2026-07-28.

The suite sends no Authorization header, so it talks to a loopback proxy that adds a real bearer
token, as an MCP host would, and passes everything else through, the Host and Origin headers of
the DNS-rebinding scenario included.
"""

import http.client
import http.server
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import setting

RUN_SH = Path(__file__).resolve().parent / "mcp_conformance" / "run.sh"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="the conformance suite runs on Node")

# Checks that call the suite's own test tools (test_missing_capability, test_streaming_elicitation,
# test_logging_tool), which a server with its own tools cannot have: the suite itself says
# "Not testable" for them.
BASELINE = """server:
  - server-stateless:sep-2575-server-rejects-undeclared-capability
  - server-stateless:sep-2575-missing-capability-http-400
  - server-stateless:sep-2575-http-server-no-independent-requests-on-stream
  - server-stateless:sep-2575-server-no-log-without-loglevel
"""
SCENARIOS = [
    ("server-initialize", "2025-11-25"),
    ("ping", "2025-11-25"),
    ("tools-list", "2025-11-25"),
    ("dns-rebinding-protection", "2025-11-25"),
    ("server-stateless", "2026-07-28"),
    ("http-header-validation", "2026-07-28"),
    ("caching", "2026-07-28"),
    ("tools-list", "2026-07-28"),
    ("dns-rebinding-protection", "2026-07-28"),
]


def bearer_proxy(target: str, token: str) -> http.server.ThreadingHTTPServer:
    """A loopback proxy to ``target`` that adds ``Authorization: Bearer token`` to every request."""
    upstream = urlsplit(target)

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "connection")}
            headers["Authorization"] = f"Bearer {token}"
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            connection.close()

        do_GET = do_POST = do_DELETE = forward

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def suite_url(app, base_url, world):
    from conftest import mcp_client
    from conftest import mcp_token

    token = mcp_token(base_url, world.org().admin_email, mcp_client(world), resource=f"{base_url}/mcp")
    proxy = bearer_proxy(base_url, token["access_token"])
    port = proxy.server_address[1]
    origins = [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]
    # The issuer stays the app's own origin, whichever Host the suite sends through the proxy.
    with setting(app, "PUBLIC_URL", base_url), setting(app, "MCP_ALLOWED_ORIGINS", origins):
        yield f"http://localhost:{port}/mcp"
    proxy.shutdown()


@pytest.mark.parametrize(("scenario", "version"), SCENARIOS, ids=[f"{s}@{v}" for s, v in SCENARIOS])
def test_the_official_conformance_scenario_passes(suite_url, tmp_path, scenario, version):
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(BASELINE)
    command = ["bash", str(RUN_SH), "server", "--url", suite_url, "--scenario", scenario]
    command += ["--spec-version", version, "--expected-failures", str(baseline), "-o", str(tmp_path / "results")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "Baseline check passed" in report, report[-4000:]
