"""A rate-limit store outage: the app keeps answering, counting in each worker's memory, and goes
back to the shared store when it returns. The test runs its own redis-server on a free port and
kills only that one."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from conftest import KEY_ENCRYPTION_KEY
from conftest import PASSWORD
from conftest import Client
from conftest import bearer
from conftest import connected
from conftest import free_ports
from conftest import rpc
from conftest import start_gunicorn
from conftest import token_request

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

SEED = """
import json
from app import app
from connected_todos.models import db
from connected_todos.registry import create_member, create_organization, register_client
with app.app_context():
    org = create_organization("Outage Org")
    create_member(org, "outage@example.com", "Outage", "{password}", "admin")
    client, secret = register_client("ChatGPT", ["https://chatgpt.com/aip/g-outage/oauth/callback"], public=False)
    db.session.commit()
    print(json.dumps({{"client_id": client.client_id, "client_secret": secret}}))
"""


def start_redis(port: int, directory: Path) -> subprocess.Popen:
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*command, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if redis.Redis(port=port).ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    pytest.fail("redis-server did not start")


def limit_keys(port: int) -> list[bytes]:
    return list(redis.Redis(port=port).scan_iter("LIMITS*"))


def health(url: str) -> dict:
    return requests.get(f"{url}/healthz", timeout=5).json()


def test_the_app_survives_a_rate_limit_store_outage_and_goes_back_to_it(tmp_path):
    redis_port, app_port = free_ports(2)
    store = start_redis(redis_port, tmp_path)
    url = f"http://127.0.0.1:{app_port}"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/outage.db",
        "SECRET_KEY": "outage-secret-key-" + "x" * 20,
        "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
        "PUBLIC_URL": url,
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{redis_port}/0",
        "RATE_LIMIT_TOKEN": "5 per minute",
        "SEED_DEMO": "0",
    }
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 120}
    assert subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], **run).returncode == 0
    seeded = subprocess.run([sys.executable, "-c", SEED.format(password=PASSWORD)], **run)
    assert seeded.returncode == 0, seeded.stderr
    credentials = json.loads(seeded.stdout.strip().splitlines()[-1])
    gpt = Client(
        credentials["client_id"], credentials["client_secret"], "https://chatgpt.com/aip/g-outage/oauth/callback"
    )
    log = tmp_path / "gunicorn.log"
    server = start_gunicorn(app_port, env, log, workers=1, threads=4)
    try:
        api_token = connected(url, "outage@example.com", gpt)["access_token"]
        mcp_token = connected(url, "outage@example.com", gpt, resource=f"{url}/mcp")["access_token"]
        assert requests.get(f"{url}/api/todos", headers=bearer(api_token)).status_code == 200
        assert limit_keys(redis_port) and health(url)["rate_limit_store"] == "ok"  # counted in Redis

        store.kill()
        store.wait()
        for _ in range(5):  # the API and /mcp go on
            assert requests.get(f"{url}/api/todos", headers=bearer(api_token)).status_code == 200
            assert rpc(url, mcp_token, "tools/list").status_code == 200
        assert health(url) == {"status": "ok", "database": "ok", "rate_limit_store": "unreachable"}
        # Limits still hold, counted in the worker's memory from the moment of the outage.
        refreshes = [
            token_request(url, gpt, {"grant_type": "refresh_token", "refresh_token": "x"}).status_code for _ in range(7)
        ]
        assert refreshes[:5] == [400] * 5 and refreshes[-1] == 429
        assert log.read_text().count("falling back to in-memory storage") == 1  # one warning an outage

        store = start_redis(redis_port, tmp_path)
        assert health(url)["rate_limit_store"] == "ok"
        deadline = time.monotonic() + 60  # Flask-Limiter looks again after 1, 2, 4, … seconds
        while not limit_keys(redis_port):
            assert time.monotonic() < deadline, "the shared store was not used again"
            assert requests.get(f"{url}/api/todos", headers=bearer(api_token)).status_code == 200
            time.sleep(0.5)
        assert "Rate limit storage recovered" in log.read_text() or limit_keys(redis_port)
    finally:
        server.terminate()
        server.wait()
        store.kill()
        store.wait()
