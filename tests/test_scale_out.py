"""Two gunicorn instances on different ports against one PostgreSQL and one Redis: a flow that
hops between them, a rate limit they share, logs free of secrets, and a database outage.

Runs when TEST_DATABASE_URL names PostgreSQL (CI's second pass); skipped on SQLite.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import KEY_ENCRYPTION_KEY
from conftest import PASSWORD
from conftest import Client
from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import free_ports
from conftest import gpt_params
from conftest import start_gunicorn
from conftest import token_request

ROOT = Path(__file__).parent.parent
BASE = os.environ.get("TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(not BASE.startswith("postgresql"), reason="needs PostgreSQL (TEST_DATABASE_URL)")
REDIS = "redis://127.0.0.1:6379/7"

SEED = """
import json
from app import app
from connected_todos.models import db
from connected_todos.registry import create_member, create_organization, register_client
with app.app_context():
    org = create_organization("Scale Org")
    member = create_member(org, "scale@example.com", "Scale", "{password}", "admin")
    client, secret = register_client("ChatGPT", ["https://chatgpt.com/aip/g-scale/oauth/callback"], public=False)
    db.session.commit()
    print(json.dumps({{"client_id": client.client_id, "client_secret": secret}}))
"""


def admin_engine() -> sa.Engine:
    return sa.create_engine(BASE.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = f"scale_out_{os.getpid()}"
    with admin_engine().connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    ports = free_ports(2)
    env = {
        **os.environ,
        "DATABASE_URL": BASE.rsplit("/", 1)[0] + f"/{name}",
        "SECRET_KEY": "scale-out-secret-key-" + "x" * 20,
        "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
        "PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",  # one issuer, as behind a load balancer
        "RATELIMIT_STORAGE_URI": REDIS,
        "RATE_LIMIT_REGISTRATION": "4 per minute",
        "SEED_DEMO": "0",
    }
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 120}
    upgrade = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], **run)
    assert upgrade.returncode == 0, upgrade.stderr
    seeded = subprocess.run([sys.executable, "-c", SEED.format(password=PASSWORD)], **run)
    assert seeded.returncode == 0, seeded.stderr
    client = json.loads(seeded.stdout.strip().splitlines()[-1])
    logs = [tmp_path_factory.mktemp("gunicorn") / "server.log" for _ in ports]
    servers = [start_gunicorn(port, env, log, workers=2, threads=2) for port, log in zip(ports, logs, strict=True)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    yield {"urls": urls, "client": client, "logs": logs, "database": name}
    for server in servers:
        server.terminate()
        server.wait(timeout=30)
    with admin_engine().connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_a_flow_that_hops_between_instances(cluster):
    a, b = cluster["urls"]
    gpt = Client(
        cluster["client"]["client_id"],
        cluster["client"]["client_secret"],
        "https://chatgpt.com/aip/g-scale/oauth/callback",
    )
    person = Person(a, "scale@example.com")
    cb = callback_params(person.authorize(gpt_params(gpt)))  # 1. authorize on A
    assert cb["iss"] == a
    tokens = exchange(b, gpt, cb["code"]).json()  # 2. token on B
    assert requests.get(f"{a}/api/me", headers=bearer(tokens["access_token"])).status_code == 200  # 3. API on A
    refreshed = token_request(b, gpt, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200  # 4. refresh on B
    revoked = requests.post(
        f"{a}/oauth/revoke", data={"token": tokens["refresh_token"]}, auth=(gpt.client_id, gpt.client_secret)
    )
    assert revoked.status_code == 200  # 5. revoke on A
    for token in (tokens["access_token"], refreshed.json()["access_token"]):  # 6. API on B
        assert requests.get(f"{b}/api/me", headers=bearer(token)).status_code == 401
    # The logs of both instances name the requests but hold none of the secrets used.
    secrets_used = [
        gpt.client_secret,
        cb["code"],
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed.json()["access_token"],
        PASSWORD,
    ]
    for log_path in cluster["logs"]:
        text = log_path.read_text()
        assert "POST /oauth/token 200" in text or "GET /api/me" in text
        for secret in secrets_used:
            assert secret not in text


def test_the_rate_limit_holds_across_instances_through_redis(cluster):
    a, b = cluster["urls"]
    body = {"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}
    statuses = [requests.post(f"{url}/oauth/register", json=body).status_code for url in (a, b, a, b, a)]
    assert statuses == [201, 201, 201, 201, 429]


def test_a_database_outage_is_a_clean_503(cluster):
    a, _ = cluster["urls"]
    with admin_engine().connect() as c:
        c.execute(sa.text(f"DROP DATABASE {cluster['database']} WITH (FORCE)"))
    health = requests.get(f"{a}/healthz")
    api = requests.get(f"{a}/api/todos", headers=bearer("x"))
    assert health.status_code == 503 and "Traceback" not in health.text
    assert api.status_code in (401, 503)  # a bad token needs no database; a good one would get 503
    token = requests.post(
        f"{a}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "c", "client_secret": "s"},
    )
    assert token.status_code == 503 and token.json()["error"] == "temporarily_unavailable"
