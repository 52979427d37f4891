"""A soak: two gunicorn instances on one PostgreSQL database, sharing Redis, under a mixed load for a
set time; then a check that nothing was lost and nothing revoked still works.

The load, from threads of this process, spread over both instances:
- whole GPT Action flows: the login form, /idp, the consent page's Allow, the code exchange;
- the REST API: a todo made, a page listed;
- MCP: tools/call add_todo and list_todos, with a token a self-registered public client got;
- refreshes of that public client's token, each retried once at once, as a client that lost the
  answer does (the grace window must give both the same pair);
- revocations of an access token (RFC 7009), which must then be refused;
- dynamic registrations (RFC 7591).

It reports errors by kind (a 5xx, an unexpected status, a refused connection), p50 and p99 per
minute, each worker's resident memory at the start and the end, and the database's connection
count; then it checks that every todo made is there and every revoked token refused.

    python bench/soak.py                     # 10 minutes
    python bench/soak.py --seconds 120       # a quicker look

Only 127.0.0.1 is contacted: PostgreSQL on 5432 (trust auth) and Redis on 6379, database 9.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import redis
import requests
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/9"
PASSWORD = "soak password 1234"
CALLBACK = "https://chatgpt.com/aip/g-soak/oauth/callback"
LOOPBACK_CALLBACK = "http://127.0.0.1/callback"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TIMEOUT = 30  # seconds for any one request: a hung answer is an error, not a stall
WEIGHTS = {"api": 6, "mcp": 4, "refresh": 2, "flow": 1, "revoke": 1, "register": 1}

SEED = """
import json
from app import app
from connected_todos.models import db
from connected_todos.registry import create_member, create_organization, register_client
with app.app_context():
    org = create_organization("Soak Org")
    emails = []
    for n in range({members}):
        emails.append(create_member(org, f"soak{{n}}@example.com", f"Soak {{n}}", "{password}", "member").email)
    gpt, secret = register_client("ChatGPT", ["{callback}"], public=False)
    db.session.commit()
    print(json.dumps({{"emails": emails, "client_id": gpt.client_id, "client_secret": secret}}))
"""


@dataclass
class Record:
    at: float
    kind: str
    status: int
    seconds: float


@dataclass
class Ledger:
    """Everything the load did, kept for the report and the final checks."""

    records: list[Record] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    todos: list[tuple[int, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, status: int, started: float, ok: bool) -> None:
        with self.lock:
            self.records.append(Record(started, kind, status, time.monotonic() - started))
            if not ok:
                self.errors[f"{kind}: HTTP {status}"] += 1


CONNECTIONS = threading.local()  # each load thread keeps its connections alive, as a client does


def session() -> requests.Session:
    if not hasattr(CONNECTIONS, "session"):
        CONNECTIONS.session = requests.Session()
    return CONNECTIONS.session


def post(url: str, **kwargs: Any) -> requests.Response:
    return session().post(url, timeout=TIMEOUT, **kwargs)


def get(url: str, **kwargs: Any) -> requests.Response:
    return session().get(url, timeout=TIMEOUT, **kwargs)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Member:
    """One member's browser on one instance, and the tokens its apps hold."""

    def __init__(self, base: str, issuer: str, email: str, seeded: dict[str, Any]) -> None:
        self.base, self.issuer, self.email, self.seeded = base, issuer, email, seeded
        self.http = requests.Session()
        self.api_token = ""
        self.mcp_token = ""
        self.mcp_client = ""
        self.refresh_token = ""

    def login(self) -> None:
        page = self.http.get(f"{self.base}/login")
        data = {"csrf_token": CSRF.search(page.text).group(1), "email": self.email, "password": PASSWORD}
        assert self.http.post(f"{self.base}/login", data=data, allow_redirects=False).status_code == 302

    def code(self, client_id: str, redirect_uri: str, **extra: str) -> str:
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "s"}
        params.update(scope="todos:read todos:write", **extra)
        answer = self.http.get(f"{self.base}/idp?" + urlencode(params), allow_redirects=False)
        if answer.status_code == 200:  # the consent page
            csrf = CSRF.search(answer.text).group(1)
            answer = self.http.post(answer.url, data={"csrf_token": csrf, "decision": "allow"}, allow_redirects=False)
        return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]

    def gpt_flow(self) -> requests.Response:
        code = self.code(self.seeded["client_id"], CALLBACK, prompt="consent")
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
        data.update(client_id=self.seeded["client_id"], client_secret=self.seeded["client_secret"])
        return post(f"{self.base}/oauth/token", data=data)

    def register_mcp_client(self) -> None:
        body = {
            "client_name": "Soak MCP client",
            "redirect_uris": [LOOPBACK_CALLBACK],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }
        self.mcp_client = post(f"{self.base}/oauth/register", json=body).json()["client_id"]
        verifier, challenge = pkce()
        code = self.code(self.mcp_client, LOOPBACK_CALLBACK, code_challenge=challenge, code_challenge_method="S256")
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": LOOPBACK_CALLBACK}
        data.update(client_id=self.mcp_client, code_verifier=verifier, resource=f"{self.issuer}/mcp")
        tokens = post(f"{self.base}/oauth/token", data=data).json()
        self.mcp_token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]


def rpc(base: str, token: str, name: str, arguments: dict[str, Any]) -> requests.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    headers = {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"}
    return post(f"{base}/mcp", json=body, headers=headers)


def act(kind: str, member: Member, ledger: Ledger) -> None:
    """One piece of the load, recorded with its status and whether it went as it should."""
    started = time.monotonic()
    bearer = {"Authorization": f"Bearer {member.api_token}"}
    if kind == "api":
        title = f"soak {secrets.token_hex(6)}"
        made = post(f"{member.base}/api/todos", json={"title": title}, headers=bearer)
        ledger.note(kind, made.status_code, started, made.status_code == 201)
        if made.status_code == 201:
            with ledger.lock:
                ledger.todos.append((made.json()["id"], title))
        listed = get(f"{member.base}/api/todos", headers=bearer)
        ledger.note(kind, listed.status_code, time.monotonic(), listed.status_code == 200)
    elif kind == "mcp":
        title = f"soak mcp {secrets.token_hex(6)}"
        made = rpc(member.base, member.mcp_token, "add_todo", {"title": title})
        ok = made.status_code == 200 and "error" not in made.json() and not made.json()["result"].get("isError")
        ledger.note(kind, made.status_code, started, ok)
        if ok:
            with ledger.lock:
                ledger.todos.append((made.json()["result"]["structuredContent"]["id"], title))
        listed = rpc(member.base, member.mcp_token, "list_todos", {})
        ledger.note(kind, listed.status_code, time.monotonic(), listed.status_code == 200)
    elif kind == "refresh":
        data = {"grant_type": "refresh_token", "refresh_token": member.refresh_token, "client_id": member.mcp_client}
        first = post(f"{member.base}/oauth/token", data=data)
        retry = post(f"{member.base}/oauth/token", data=data)  # the answer was "lost"
        same = first.status_code == retry.status_code == 200 and first.json() == retry.json()
        ledger.note(kind, retry.status_code, started, same)
        if same:
            member.mcp_token, member.refresh_token = first.json()["access_token"], first.json()["refresh_token"]
    elif kind == "flow":
        answer = member.gpt_flow()
        ledger.note(kind, answer.status_code, started, answer.status_code == 200)
        if answer.status_code == 200:
            member.api_token = answer.json()["access_token"]
    elif kind == "revoke":
        doomed = member.gpt_flow().json()["access_token"]
        data = {
            "token": doomed,
            "client_id": member.seeded["client_id"],
            "client_secret": member.seeded["client_secret"],
        }
        answer = post(f"{member.base}/oauth/revoke", data=data)
        ledger.note(kind, answer.status_code, started, answer.status_code == 200)
        if answer.status_code == 200:
            with ledger.lock:
                ledger.revoked.append(doomed)
    elif kind == "register":
        body = {"client_name": "Soak registration", "redirect_uris": [LOOPBACK_CALLBACK]}
        answer = post(f"{member.base}/oauth/register", json=body)
        ledger.note(kind, answer.status_code, started, answer.status_code == 201)


def load(member: Member, ledger: Ledger, until: float) -> None:
    kinds = [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
    while time.monotonic() < until:
        kind = secrets.choice(kinds)
        try:
            act(kind, member, ledger)
        except (requests.RequestException, ValueError, KeyError, AttributeError) as error:
            with ledger.lock:
                ledger.errors[f"{kind}: {type(error).__name__}: {str(error)[-120:]}"] += 1


# ---- The servers, and what they use ------------------------------------------------------------


def gunicorn(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "2", "--threads", "4", "--no-control-socket", "app:app"]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
    for _ in range(300):
        with contextlib.suppress(requests.RequestException):
            if f"127.0.0.1:{port}" in log.read_text() and get(f"http://127.0.0.1:{port}/livez").ok:
                return server
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn on {port} did not start; see {log}")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_memory(masters: list[subprocess.Popen]) -> dict[str, int]:
    """Each gunicorn worker's resident set, in KB, read from /proc."""
    memory = {}
    for master in masters:
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                memory[pid] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return memory


def connections(database: str) -> int:
    """The database's open connections, both instances' pools together."""
    query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"  # noqa: S608 - our own name
    return int(psql(query, "-At") or 0)


def psql(statement: str, *options: str) -> str:
    command = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", *options, "-c", statement]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()  # noqa: S603


# ---- The run -----------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def report(ledger: Ledger, start: float, samples: list[dict[str, Any]], checks: dict[str, Any]) -> dict[str, Any]:
    minutes: dict[int, list[float]] = defaultdict(list)
    for record in ledger.records:
        minutes[int((record.at - start) // 60)].append(record.seconds)
    per_minute = [
        {
            "minute": m + 1,
            "requests": len(v),
            "p50_ms": round(statistics.median(v) * 1000, 1),
            "p99_ms": round(percentile(v, 0.99) * 1000, 1),
        }
        for m, v in sorted(minutes.items())
    ]
    first, last = samples[0]["memory"], samples[-1]["memory"]
    growth = {pid: last[pid] - first[pid] for pid in first if pid in last}
    return {
        "requests": len(ledger.records),
        "by_kind": dict(Counter(r.kind for r in ledger.records)),
        "errors": dict(ledger.errors),
        "per_minute": per_minute,
        "worker_rss_kb": {"start": first, "end": last, "growth": growth},
        "db_connections": [s["connections"] for s in samples],
        **checks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--clients", type=int, default=12, help="threads of load, each a member")
    args = parser.parse_args()
    database = f"soak_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    psql(f"CREATE DATABASE {database}")
    redis.Redis.from_url(REDIS).flushdb()
    ports = free_ports(2)
    issuer = f"http://127.0.0.1:{ports[0]}"  # one issuer for both, as behind a load balancer
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{database}",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "PUBLIC_URL": issuer,
        "RATELIMIT_STORAGE_URI": REDIS,
        **{f"RATE_LIMIT_{n}": "100000000 per minute" for n in ("API", "TOKEN", "REGISTRATION", "LOGIN")},
        "SEED_DEMO": "0",
    }
    servers: list[subprocess.Popen] = []
    try:
        run = {"cwd": REPO, "env": env, "capture_output": True, "text": True, "check": True}
        subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], **run)
        seeded = json.loads(
            subprocess.run(  # noqa: S603 - our own interpreter and script
                [sys.executable, "-c", SEED.format(members=args.clients, password=PASSWORD, callback=CALLBACK)], **run
            ).stdout.splitlines()[-1]
        )
        servers = [gunicorn(port, env, work / f"gunicorn-{port}.log") for port in ports]
        members = []
        for n, email in enumerate(seeded["emails"]):
            member = Member(f"http://127.0.0.1:{ports[n % 2]}", issuer, email, seeded)
            member.login()
            member.api_token = member.gpt_flow().json()["access_token"]
            member.register_mcp_client()
            members.append(member)
        start = time.monotonic()
        until = start + args.seconds
        ledger = Ledger()
        threads = [threading.Thread(target=load, args=(m, ledger, until), daemon=True) for m in members]
        for thread in threads:
            thread.start()
        samples = []
        while time.monotonic() < until:
            samples.append({"memory": worker_memory(servers), "connections": connections(database)})
            print(
                f"{int(time.monotonic() - start):>4} s  {len(ledger.records):>7} requests  "
                f"{sum(ledger.errors.values())} errors",
                flush=True,
            )
            time.sleep(min(60, max(0, until - time.monotonic())))
        for thread in threads:
            thread.join()
        samples.append({"memory": worker_memory(servers), "connections": connections(database)})
        checks = final_checks(members[0], ledger, seeded)
        result = report(ledger, start, samples, checks)
        print(json.dumps(result, indent=2))
        return 0 if not result["errors"] and not checks["todos_missing"] and not checks["revoked_still_working"] else 1
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=25)
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def final_checks(member: Member, ledger: Ledger, seeded: dict[str, Any]) -> dict[str, Any]:
    """Every todo made during the run is there, with its title; every revoked token is refused."""
    token = member.gpt_flow().json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    missing = [
        todo_id
        for todo_id, title in ledger.todos
        if (answer := get(f"{member.base}/api/todos/{todo_id}", headers=bearer)).status_code != 200
        or answer.json()["title"] != title
    ]
    working = [
        t
        for t in ledger.revoked
        if get(f"{member.base}/api/me", headers={"Authorization": f"Bearer {t}"}).status_code != 401
    ]
    return {
        "todos_made": len(ledger.todos),
        "todos_missing": len(missing),
        "tokens_revoked": len(ledger.revoked),
        "revoked_still_working": len(working),
    }


if __name__ == "__main__":
    sys.exit(main())
