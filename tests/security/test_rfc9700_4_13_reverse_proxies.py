"""RFC 9700 §4.13, TLS-terminating reverse proxies: the app believes X-Forwarded-* only from as many
proxies as TRUSTED_PROXIES names, and gunicorn believes none of them itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import KEY_ENCRYPTION_KEY
from conftest import free_ports
from conftest import start_gunicorn

ROOT = Path(__file__).parents[2]


def environment(tmp_path: Path, trusted_proxies: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("APP_ENV", "PUBLIC_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/app.db",
        SECRET_KEY="k" * 40,
        KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY,
        RATELIMIT_STORAGE_URI="memory://",  # one worker
        SEED_DEMO="0",
        TRUSTED_PROXIES=trusted_proxies,
        **extra,
    )
    return env


FORGED_LOGINS = """
import re, app
client = app.app.test_client()
for n in range(3):
    page = client.get("/login", environ_base={"REMOTE_ADDR": "198.51.100.1"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": token, "email": f"nobody{n}@nowhere.test", "password": "wrong"}
    # Each guess claims to have been forwarded for another address.
    forged = {"X-Forwarded-For": f"203.0.113.{n}"}
    answer = client.post("/login", data=form, headers=forged, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    print(answer.status_code)
"""


@pytest.mark.parametrize(("trusted_proxies", "statuses"), [("0", "200 200 429"), ("1", "200 200 200")])
def test_a_forged_forwarded_for_escapes_the_address_throttle_only_behind_a_proxy(tmp_path, trusted_proxies, statuses):
    # Reached directly (TRUSTED_PROXIES=0), X-Forwarded-For is the client's own claim and is ignored;
    # behind one proxy, that proxy's entry is believed, as the platform's router sets it.
    result = subprocess.run(
        [sys.executable, "-c", FORGED_LOGINS],
        cwd=ROOT,
        env=environment(tmp_path, trusted_proxies, RATE_LIMIT_LOGIN="2 per minute"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert " ".join(result.stdout.split()) == statuses


@pytest.fixture
def gunicorn(tmp_path):
    """Start the app under gunicorn with a given TRUSTED_PROXIES; stop it afterwards."""
    servers = []

    def start(trusted_proxies: str) -> str:
        (port,) = free_ports(1)
        url = f"http://127.0.0.1:{port}"
        env = environment(tmp_path, trusted_proxies, PUBLIC_URL=url)
        servers.append(start_gunicorn(port, env, tmp_path / f"gunicorn-{port}.log"))
        return url

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(("trusted_proxies", "secure"), [("0", False), ("1", True)])
def test_only_a_trusted_proxy_can_say_the_request_came_over_https(gunicorn, trusted_proxies, secure):
    # A client that claims https itself must not get the answers meant for https: HSTS, Secure cookies.
    url = gunicorn(trusted_proxies)
    for claim in ({"X-Forwarded-Proto": "https"}, {"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"}):
        response = requests.get(f"{url}/livez", headers=claim)
        expected = secure and "X-Forwarded-Proto" in claim  # ProxyFix reads X-Forwarded-Proto only
        assert ("Strict-Transport-Security" in response.headers) == expected, claim
    # Nor may a client move the app under another path with gunicorn's SCRIPT_NAME header.
    moved = requests.get(f"{url}/x/livez", headers={"SCRIPT_NAME": "/x"})
    assert moved.status_code == 404
