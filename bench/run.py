"""Benchmark Connected Todos under gunicorn, on PostgreSQL and on SQLite, from a second process.

For each database the script

1. creates a fresh database (a PostgreSQL database on 127.0.0.1:5432, or a temporary SQLite file)
   and seeds it in a child process through the app module itself: three organizations with 100,
   10,000 and 100,000 todos, one member each, and a confidential client with a loopback
   redirect URI, registered the way a GPT Action is;
2. starts ``gunicorn -c gunicorn.conf.py --bind 127.0.0.1:PORT --workers 2 --threads 4 app:app``
   with APP_ENV=production, PUBLIC_URL equal to the URL it calls, and SEED_DEMO=0;
3. gets its tokens over HTTP through the real flow: the login form with its CSRF token, /idp,
   the consent page's Allow, and /oauth/token with client_secret_post;
4. loads the server from a second process on loopback, with wrk (Lua scripts carry the headers,
   bodies and the per-connection state of the multi-step flows) or, when wrk is missing, with a
   Python multi-process client, at 16 connections, and measures side by side:

   (a) the floor: a bare Flask app (``bench/floor.py``) under the same gunicorn settings, beside
       the app, and the app's ``GET /livez`` (every middleware, no database);
   (b) ``GET /api/todos`` with a valid JWT, and MCP ``tools/call list_todos``;
   (c) ``/oauth/token`` for authorization-code exchanges (codes made beforehand through ``GET /idp``
       with an already-consented session, one request per code) and for refreshes;
   (d) whole authorize -> consent -> token flows, with ``prompt=consent`` so that the consent
       page is rendered and posted each time (three requests per flow);
   (e) the first page of a 100,000-todo organization against a 100-todo one;

   each with the server's CPU time per request (from /proc), steadier than req/s on a shared
   machine; after a warm-up, rounds alternate their order so that drift hits every measurement;

5. prints medians over the rounds, p99, the ratios and the goals with PASS or MISS, and cleans
   up: gunicorn is stopped, the PostgreSQL database is dropped and temporary files are removed.

Only 127.0.0.1 is ever contacted. Usage: ``python bench/run.py --seconds 10 --rounds 3``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import queue as queue_module
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432"
USER_AGENT = "connected-todos-bench/1"  # Flask-Login's strong session protection pins it
REDIRECT_URI = "http://127.0.0.1:8765/callback"  # loopback, never contacted
SCOPE = "openid profile email todos:read todos:write"  # what a GPT Action asks for
PASSWORD = "bench password 1234"
ORG_SIZES = {"org100": 100, "org10k": 10_000, "org100k": 100_000}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
# High enough never to answer 429 during a run; the limiter itself still runs on every request.
RATE_LIMIT_ENV = {"RATE_LIMIT_API": "100000000 per minute", "RATE_LIMIT_TOKEN": "100000000 per minute"}

# The goals, each against the bare Flask floor (bench/floor.py) measured in the same run.
TARGET_API_FLOOR_RATIO = 0.40  # GET /api/todos req/s
TARGET_API_CPU_RATIO = 2.5  # GET /api/todos server CPU per request, at most this many floors
TARGET_MCP_API_RATIO = 0.8  # MCP tools/call list_todos against the API
TARGET_LIVEZ_FLOOR_RATIO = 0.80  # the middleware must be almost free
TARGET_TOKEN_FLOOR_RATIO = 0.22  # 2x django-oauth-toolkit's token endpoint (performance.md)
TARGET_TOKEN_P99_MS = 100.0
TARGET_API_P99_MS = 30.0
TARGET_PAGE_COST_RATIO = 1.5


# ---------------------------------------------------------------------------------------------
# Seeding, in a child process that imports the app module with the benchmark's environment
# ---------------------------------------------------------------------------------------------


def seed_database(env: dict[str, str], queue: Any) -> None:
    """Create the schema (the app's migrations), the organizations, members, todos and client."""
    os.environ.update(env)
    os.environ.pop("APP_ENV", None)  # development mode: create_app() runs the migrations
    sys.path.insert(0, str(REPO))
    import sqlalchemy as sa

    from app import app as flask_app
    from connected_todos.models import Todo
    from connected_todos.models import db
    from connected_todos.registry import create_member
    from connected_todos.registry import create_organization
    from connected_todos.registry import register_client

    with flask_app.app_context():
        members: dict[str, str] = {}
        now = datetime.now(UTC).replace(tzinfo=None)
        for slug, size in ORG_SIZES.items():
            org = create_organization(f"Bench {slug}", slug)
            email = f"{slug}@bench.example.com"
            member = create_member(org, email, f"Member of {slug}", PASSWORD, "admin")
            db.session.commit()
            members[slug] = email
            chunk = 10_000
            for start in range(0, size, chunk):
                rows = [
                    {
                        "organization_id": org.id,
                        "title": f"Todo number {i} of {slug}",
                        "notes": "Some notes about this todo." if i % 2 else "",
                        "completed": i % 3 == 0,
                        "due_date": date(2027, 1, 1) + timedelta(days=i % 365) if i % 4 == 0 else None,
                        "created_by_id": member.id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(size, start + chunk))
                ]
                db.session.execute(sa.insert(Todo), rows)
                db.session.commit()
        client, secret = register_client("Bench GPT", [REDIRECT_URI], public=False)
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        queue.put({"client_id": client.client_id, "client_secret": secret, "members": members})
        db.engine.dispose()


def seed(env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """Seed in a fresh interpreter, so that each database gets its own app module and engine."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=seed_database, args=(env, queue))
    process.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(queue_module.Empty):
                return queue.get(timeout=1)
            if not process.is_alive():
                raise RuntimeError(f"seeding failed (exit code {process.exitcode}); its traceback is above")
        raise RuntimeError(f"seeding took more than {timeout:.0f} s")
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


# ---------------------------------------------------------------------------------------------
# Databases and the server
# ---------------------------------------------------------------------------------------------


def psql(sql: str) -> None:
    """Run one statement as postgres on the local cluster (trust auth)."""
    subprocess.run(  # noqa: S603  (a fixed command; sql is the script's own)
        [
            shutil.which("psql") or "/usr/bin/psql",
            "-q",
            "-h",
            HOST,
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )


def postgres_available() -> bool:
    try:
        with socket.create_connection((HOST, 5432), timeout=2):
            pass
        psql("SELECT 1")
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """Yield the DATABASE_URL of a fresh database, and remove it afterwards."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"connected_todos_bench_{os.getpid()}_{secrets.token_hex(3)}"
    psql(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_ADMIN_URL}/{name}"
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


RATE_LIMIT_STORE = "redis://127.0.0.1:6379/10"


def redis_available() -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, 6379), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the master and its workers have used so far (utime + stime, from /proc)."""
        pids = [str(self.pid)]
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        if children.exists():
            pids += children.read_text().split()
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
        return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], port: int, log_path: Path, app: str = "app:app", ready: str = "/livez"
) -> Iterator[Server]:
    """Run ``app`` under gunicorn with the repo's config, 2 workers x 4 threads; yield it."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--no-control-socket",  # gunicorn 27 would otherwise open one under ~/.gunicorn
        app,
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and fixed arguments)
            command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True
        )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}{ready}", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer {ready} within 60 s; see {log_path}")
            time.sleep(0.2)
        yield Server(base, process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the master stops its workers gracefully
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# The OAuth flow over HTTP, as a browser and a GPT Action would run it
# ---------------------------------------------------------------------------------------------


@dataclass
class Tokens:
    access_token: str
    refresh_token: str
    session_cookie: str  # the member's logged-in, already-consented browser session


def authorize_params(client_id: str, prompt: str | None = None) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "bench-state-0123456789",
    }
    if prompt:
        params["prompt"] = prompt
    return params


def code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def token_body(seeded: dict[str, Any], **values: str) -> dict[str, str]:
    return {"client_id": seeded["client_id"], "client_secret": seeded["client_secret"], **values}


def obtain_tokens(base: str, seeded: dict[str, Any], email: str) -> Tokens:
    """Log in with the form and its CSRF token, authorize, allow on the consent page, redeem."""
    http = requests.Session()
    http.headers["User-Agent"] = USER_AGENT
    query = "/idp?" + urlencode(authorize_params(seeded["client_id"]))
    page = http.get(f"{base}/login", timeout=10)
    csrf = CSRF_RE.search(page.text)
    assert csrf, "no CSRF token on the login page"
    response = http.post(
        f"{base}/login",
        data={"csrf_token": csrf.group(1), "email": email, "password": PASSWORD, "returnTo": query},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, f"login failed: {response.status_code} {response.text[:300]}"
    consent = http.get(base + response.headers["Location"], allow_redirects=False, timeout=10)
    csrf = CSRF_RE.search(consent.text)
    assert consent.status_code == 200 and csrf, f"no consent page: {consent.status_code}"
    callback = http.post(
        base + query, data={"csrf_token": csrf.group(1), "decision": "allow"}, allow_redirects=False, timeout=10
    )
    assert callback.status_code == 302, f"consent failed: {callback.status_code}"
    token = requests.post(
        f"{base}/oauth/token",
        data=token_body(
            seeded,
            grant_type="authorization_code",
            code=code_of(callback.headers["Location"]),
            redirect_uri=REDIRECT_URI,
        ),
        headers={"User-Agent": USER_AGENT},
        timeout=10,
    )
    assert token.status_code == 200, f"token exchange failed: {token.status_code} {token.text[:200]}"
    body = token.json()
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.get_dict().items())
    return Tokens(body["access_token"], body["refresh_token"], cookie)


# ---------------------------------------------------------------------------------------------
# Scenarios, run by wrk (Lua) or by the Python fallback
# ---------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """What each connection sends.

    ``static``: one fixed request. ``collect``: a fixed GET /idp whose 302 carries a code, which is
    kept. ``exchange``: POST ``body`` + a code from ``codes_file``. ``flow``: GET consent page,
    POST Allow with its CSRF token, POST the code to /oauth/token, and again.
    """

    kind: str
    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    codes_file: str = ""
    token_headers: dict[str, str] = field(default_factory=dict)
    token_body: str = ""

    @property
    def one_connection_per_thread(self) -> bool:
        return self.kind == "flow"  # its state lives in the thread, so one connection each


@dataclass
class LoadResult:
    ok: int  # successful units: responses for single requests, whole flows for ``flow``
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    exhausted: bool = False
    codes: list[str] = field(default_factory=list)
    cpu_us: float = 0.0  # the server's CPU per request, its workers and master together

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def lua_string(value: str) -> str:
    assert value.isascii() and "\n" not in value
    return json.dumps(value)  # an ASCII JSON string is also a valid Lua string


def lua_table(values: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in values.items()) + "}"


LUA_COMMON = """
local threads = {}
ok, bad, exhausted = 0, 0, 0
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local function report(summary, latency)
  local c = {ok = 0, bad = 0, exhausted = 0}
  for _, t in ipairs(threads) do
    for k, _ in pairs(c) do c[k] = c[k] + (t:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %.0f, "duration_us": %.0f, "p50_us": %.0f, "p99_us": %.0f, ' ..
    '"status_errors": %.0f, "socket_errors": %.0f, "ok": %.0f, "bad": %.0f, "exhausted": %.0f}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, c.ok, c.bad, c.exhausted))
end
"""


def lua_script(scenario: Scenario, nthreads: int, codes_out: str) -> str:
    """The wrk script for a scenario; it prints one BENCH_JSON line when done."""
    s = scenario
    if s.kind == "static":
        body = f"""
wrk.method = {lua_string(s.method)}
wrk.path = {lua_string(s.path)}
wrk.body = {lua_string(s.body) if s.body else "nil"}
for k, v in pairs({lua_table(s.headers)}) do wrk.headers[k] = v end
function done(summary, latency, requests) report(summary, latency) end
"""
    elif s.kind == "collect":
        body = f"""
wrk.method = "GET"
wrk.path = {lua_string(s.path)}
for k, v in pairs({lua_table(s.headers)}) do wrk.headers[k] = v end
codes = {{}}
function response(status, headers, body)
  local location = headers["Location"] or headers["location"] or ""
  local code = location:match("[?&]code=([^&]+)")
  if status == 302 and code then codes[#codes + 1] = code; ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  report(summary, latency)
  local f = assert(io.open({lua_string(codes_out)}, "w"))
  for _, t in ipairs(threads) do
    for _, code in ipairs(t:get("codes")) do f:write(code, "\\n") end
  end
  f:close()
end
"""
    elif s.kind == "exchange":
        body = f"""
local headers = {lua_table(s.headers)}
function init(args)
  mine, pos, i = {{}}, 0, 0
  for line in io.lines({lua_string(s.codes_file)}) do
    if i % {nthreads} == tid then mine[#mine + 1] = line end
    i = i + 1
  end
end
function request()
  pos = pos + 1
  local code = mine[pos]
  if code == nil then
    exhausted = 1
    wrk.thread:stop()
    code = "exhausted"
  end
  return wrk.format("POST", {lua_string(s.path)}, headers, {lua_string(s.body)} .. code)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests) report(summary, latency) end
"""
    elif s.kind == "flow":
        body = f"""
local page_headers = {lua_table(s.headers)}
local form_headers = {lua_table({**s.headers, "Content-Type": "application/x-www-form-urlencoded"})}
local token_headers = {lua_table(s.token_headers)}
step, csrf, code = 1, nil, nil
function request()
  if step == 1 then return wrk.format("GET", {lua_string(s.path)}, page_headers) end
  if step == 2 then
    return wrk.format("POST", {lua_string(s.path)}, form_headers, "csrf_token=" .. csrf .. "&decision=allow")
  end
  return wrk.format("POST", "/oauth/token", token_headers, {lua_string(s.token_body)} .. code)
end
function response(status, headers, body)
  if step == 1 then
    csrf = status == 200 and body:match('name="csrf_token" value="([^"]+)"')
    if csrf then step = 2 else bad = bad + 1 end
  elseif step == 2 then
    local location = headers["Location"] or headers["location"] or ""
    code = status == 302 and location:match("[?&]code=([^&]+)")
    if code then step = 3 else bad = bad + 1; step = 1 end
  else
    if status == 200 then ok = ok + 1 else bad = bad + 1 end
    step = 1
  end
end
function done(summary, latency, requests) report(summary, latency) end
"""
    else:
        raise ValueError(s.kind)
    return LUA_COMMON + body


def run_wrk(base: str, scenario: Scenario, seconds: float, connections: int, workdir: Path) -> LoadResult:
    nthreads = connections if scenario.one_connection_per_thread else 2
    codes_out = str(workdir / f"codes-{secrets.token_hex(4)}.txt")
    script = workdir / f"scenario-{secrets.token_hex(4)}.lua"
    script.write_text(lua_script(scenario, nthreads, codes_out))
    command = [
        shutil.which("wrk") or "wrk",
        f"-t{nthreads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
    ]
    out = subprocess.run(  # noqa: S603  (wrk with the script's own arguments)
        [*command, base + "/"], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    script.unlink()
    match = re.search(r"^BENCH_JSON (.*)$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    raw = json.loads(match.group(1))
    codes: list[str] = []
    if scenario.kind == "collect":
        codes = Path(codes_out).read_text().split()
        Path(codes_out).unlink()
    counted = scenario.kind != "static"
    requests_done = int(raw["requests"])
    return LoadResult(
        ok=int(raw["ok"]) if counted else requests_done - int(raw["status_errors"]),
        requests=requests_done,
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=int(raw["socket_errors"]) + (int(raw["bad"]) if counted else int(raw["status_errors"])),
        exhausted=bool(raw["exhausted"]),
        codes=codes,
    )


# The Python fallback: processes of threads, one keep-alive connection per thread.


class Connection:
    """One client connection running a scenario, like a one-connection wrk thread."""

    def __init__(self, host: str, port: int, scenario: Scenario, codes: list[str]) -> None:
        self.http = http.client.HTTPConnection(host, port, timeout=5)
        self.scenario, self.codes, self.pos = scenario, codes, 0
        self.step, self.csrf, self.code = 1, "", ""
        self.ok = self.bad = 0
        self.exhausted = False
        self.collected: list[str] = []
        self.latencies: list[float] = []

    def next_request(self) -> tuple[str, str, dict[str, str], str] | None:
        s = self.scenario
        if s.kind in ("static", "collect"):
            return s.method, s.path, s.headers, s.body
        if s.kind == "exchange":
            if self.pos >= len(self.codes):
                self.exhausted = True
                return None
            self.pos += 1
            return "POST", s.path, s.headers, s.body + self.codes[self.pos - 1]
        if self.step == 1:
            return "GET", s.path, s.headers, ""
        if self.step == 2:
            form = {**s.headers, "Content-Type": "application/x-www-form-urlencoded"}
            return "POST", s.path, form, f"csrf_token={self.csrf}&decision=allow"
        return "POST", "/oauth/token", s.token_headers, s.token_body + self.code

    def on_response(self, status: int, location: str, body: str) -> None:
        kind = self.scenario.kind
        code = parse_qs(urlsplit(location).query).get("code", [""])[0]
        if kind == "static":
            self.ok, self.bad = self.ok + (status < 400), self.bad + (status >= 400)
        elif kind == "collect":
            if status == 302 and code:
                self.collected.append(code)
                self.ok += 1
            else:
                self.bad += 1
        elif kind == "exchange":
            self.ok, self.bad = self.ok + (status == 200), self.bad + (status != 200)
        elif self.step == 1:
            match = CSRF_RE.search(body) if status == 200 else None
            self.csrf, self.step = (match.group(1), 2) if match else ("", 1)
            self.bad += not match
        elif self.step == 2:
            self.code, self.step = (code, 3) if status == 302 and code else ("", 1)
            self.bad += not self.code
        else:
            self.ok, self.bad, self.step = self.ok + (status == 200), self.bad + (status != 200), 1

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            request = self.next_request()
            if request is None:
                return
            method, path, headers, body = request
            started = time.perf_counter()
            try:
                self.http.request(method, path, body=body or None, headers=headers)
                response = self.http.getresponse()
                text = response.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                self.bad += 1
                self.http.close()
                continue
            self.latencies.append(time.perf_counter() - started)
            self.on_response(response.status, response.getheader("Location", ""), text)


def python_worker(port: int, scenario: Scenario, code_slices: list[list[str]], seconds: float, queue: Any) -> None:
    connections = [Connection(HOST, port, scenario, codes) for codes in code_slices]
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=c.run, args=(deadline,)) for c in connections]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(
        {
            "ok": sum(c.ok for c in connections),
            "bad": sum(c.bad for c in connections),
            "exhausted": any(c.exhausted for c in connections),
            "latencies": [x for c in connections for x in c.latencies],
            "codes": [x for c in connections for x in c.collected],
        }
    )


def run_python(base: str, scenario: Scenario, seconds: float, connections: int) -> LoadResult:
    port = urlsplit(base).port or 80
    codes = Path(scenario.codes_file).read_text().split() if scenario.kind == "exchange" else []
    slices = [codes[i::connections] for i in range(connections)]
    nprocs = min(connections, max(2, (os.cpu_count() or 2)))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(target=python_worker, args=(port, scenario, slices[i::nprocs], seconds, queue))
        for i in range(nprocs)
    ]
    for p in procs:
        p.start()
    parts = [queue.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    latencies = sorted(x for part in parts for x in part["latencies"])
    return LoadResult(
        ok=sum(p["ok"] for p in parts),
        requests=len(latencies),
        seconds=seconds,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        errors=sum(p["bad"] for p in parts),
        exhausted=any(p["exhausted"] for p in parts),
        codes=[c for p in parts for c in p["codes"]],
    )


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, math.ceil(pct / 100 * len(values)) - 1)]


# ---------------------------------------------------------------------------------------------
# One database: seed, serve, measure
# ---------------------------------------------------------------------------------------------

MEASUREMENTS = [
    ("floor", "bare Flask floor (bench/floor.py)"),
    ("livez", "GET /livez (every middleware, no database)"),
    ("api", "GET /api/todos, 10,000-todo org"),
    ("mcp", "MCP tools/call list_todos"),
    ("code", "/oauth/token, authorization_code"),
    ("refresh", "/oauth/token, refresh_token"),
    ("flow", "authorize+consent+token flows"),
    ("page100", "first page, 100-todo org"),
    ("page100k", "first page, 100,000-todo org"),
]


@dataclass
class DatabaseRun:
    database: str
    rounds: list[dict[str, LoadResult]] = field(default_factory=list)
    skipped: str = ""

    def median(self, key: str, attribute: str) -> float:
        return statistics.median(getattr(r[key], attribute) for r in self.rounds)

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of a per-round throughput ratio (the floor drifts between rounds)."""
        return statistics.median(
            r[numerator].rate / r[denominator].rate if r[denominator].rate else 0.0 for r in self.rounds
        )

    def cpu_ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of a per-round ratio of server CPU per request."""
        return statistics.median(
            r[numerator].cpu_us / r[denominator].cpu_us if r[denominator].cpu_us else 0.0 for r in self.rounds
        )


def bench_database(kind: str, args: argparse.Namespace, workdir: Path) -> DatabaseRun:
    run = DatabaseRun(kind)
    with database(kind, workdir) as url:
        port = args.port or free_port()
        base = f"http://{HOST}:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "PUBLIC_URL": base,
            "SEED_DEMO": "0",
            # Shared counters in Redis, as production has them (memory:// when there is no Redis).
            "RATELIMIT_STORAGE_URI": RATE_LIMIT_STORE if redis_available() else "memory://",
            **RATE_LIMIT_ENV,
        }
        env.pop("APP_ENV", None)
        started = time.monotonic()
        seeded = seed(env)
        print(f"[{kind}] seeded {sum(ORG_SIZES.values()):,} todos in {time.monotonic() - started:.1f} s", flush=True)
        floor_log = workdir / f"gunicorn-floor-{kind}.log"
        with (
            gunicorn(env, port, workdir / f"gunicorn-{kind}.log") as server,
            gunicorn(env, free_port(), floor_log, app="bench.floor:app", ready="/") as floor,
        ):
            tokens = {slug: obtain_tokens(server.base, seeded, email) for slug, email in seeded["members"].items()}
            mcp = obtain_mcp_token(server.base, seeded, tokens["org10k"])
            print(f"[{kind}] tokens obtained through login, /idp, consent and /oauth/token", flush=True)
            scenarios = build_scenarios(seeded, tokens, mcp, workdir)
            load = make_loader(args, workdir)

            def measure(key: str, seconds: float) -> LoadResult:
                target = floor if key == "floor" else server
                before = target.cpu_seconds()
                result = load(target.base, scenarios[key], seconds)
                result.cpu_us = (target.cpu_seconds() - before) / max(result.requests, 1) * 1e6
                return result

            for key in ("floor", "livez", "api", "mcp"):  # warm up: connections, caches, JIT-less Python
                measure(key, 2)
            keys = [key for key, _ in MEASUREMENTS]
            for n in range(args.rounds):
                results: dict[str, LoadResult] = {}
                for key in keys if n % 2 == 0 else reversed(keys):  # alternate, so drift hits all alike
                    if key == "code":
                        collected = load(server.base, scenarios["collect"], args.seconds)
                        Path(scenarios["code"].codes_file).write_text("\n".join(collected.codes) + "\n")
                    results[key] = measure(key, args.seconds)
                run.rounds.append(results)
                summary = ", ".join(f"{k} {results[k].rate:,.0f}/s" for k in keys)
                print(f"[{kind}] round {n + 1}/{args.rounds}: {summary}", flush=True)
    return run


def obtain_mcp_token(base: str, seeded: dict[str, Any], tokens: Tokens) -> str:
    """A token for /mcp (RFC 8707), from the member's consented session and the same client."""
    params = {**authorize_params(seeded["client_id"]), "resource": f"{base}/mcp"}
    headers = {"User-Agent": USER_AGENT, "Cookie": tokens.session_cookie}
    answer = requests.get(f"{base}/idp?" + urlencode(params), headers=headers, allow_redirects=False, timeout=10)
    body = token_body(
        seeded,
        grant_type="authorization_code",
        code=code_of(answer.headers["Location"]),
        redirect_uri=REDIRECT_URI,
        resource=f"{base}/mcp",
    )
    token = requests.post(f"{base}/oauth/token", data=body, headers={"User-Agent": USER_AGENT}, timeout=10)
    return token.json()["access_token"]


def build_scenarios(
    seeded: dict[str, Any], tokens: dict[str, Tokens], mcp_token: str, workdir: Path
) -> dict[str, Scenario]:
    ua = {"User-Agent": USER_AGENT}
    browser = {**ua, "Cookie": tokens["org10k"].session_cookie}
    form = {**ua, "Content-Type": "application/x-www-form-urlencoded"}
    code_body = urlencode(token_body(seeded, grant_type="authorization_code", redirect_uri=REDIRECT_URI)) + "&code="
    refresh_body = urlencode(
        token_body(seeded, grant_type="refresh_token", refresh_token=tokens["org10k"].refresh_token)
    )

    def api(slug: str) -> Scenario:
        return Scenario("static", "/api/todos", headers={**ua, "Authorization": f"Bearer {tokens[slug].access_token}"})

    mcp_call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_todos", "arguments": {}}}
    mcp_headers = {
        **ua,
        "Authorization": f"Bearer {mcp_token}",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    return {
        "floor": Scenario("static", "/", headers=ua),
        "livez": Scenario("static", "/livez", headers=ua),
        "api": api("org10k"),
        "mcp": Scenario("static", "/mcp", method="POST", headers=mcp_headers, body=json.dumps(mcp_call)),
        "page100": api("org100"),
        "page100k": api("org100k"),
        "collect": Scenario("collect", "/idp?" + urlencode(authorize_params(seeded["client_id"])), headers=browser),
        "code": Scenario("exchange", "/oauth/token", headers=form, body=code_body, codes_file=str(workdir / "codes")),
        "refresh": Scenario("static", "/oauth/token", method="POST", headers=form, body=refresh_body),
        "flow": Scenario(
            "flow",
            "/idp?" + urlencode(authorize_params(seeded["client_id"], prompt="consent")),
            headers=browser,
            token_headers=form,
            token_body=code_body,
        ),
    }


def make_loader(args: argparse.Namespace, workdir: Path) -> Any:
    def load(base: str, scenario: Scenario, seconds: float) -> LoadResult:
        if args.loadgen == "wrk":
            return run_wrk(base, scenario, seconds, args.connections, workdir)
        return run_python(base, scenario, seconds, args.connections)

    return load


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(runs: list[DatabaseRun], args: argparse.Namespace) -> None:
    print()
    print(
        f"Connected Todos benchmark: gunicorn 2 workers x 4 threads, {args.loadgen} {args.connections} connections "
        f"on loopback, {args.seconds:g} s per measurement, {args.rounds} round(s), medians over rounds; "
        f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'database':<11} {'measurement':<44} {'per s':>8} {'÷ floor':>8} {'CPU µs':>8} {'÷ floor':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        if run.skipped:
            print(f"{run.database:<11} skipped: {run.skipped}")
            continue
        for key, label in MEASUREMENTS:
            rate, cpu = run.median(key, "rate"), run.median(key, "cpu_us")
            errors = sum(r[key].errors for r in run.rounds)
            note = " (codes ran out: a lower bound)" if any(r[key].exhausted for r in run.rounds) else ""
            p50, p99 = run.median(key, "p50_ms"), run.median(key, "p99_ms")
            print(
                f"{run.database:<11} {label:<44} {rate:>8,.0f} {run.ratio(key, 'floor'):>8.2f} {cpu:>8,.0f} "
                f"{run.cpu_ratio(key, 'floor'):>8.2f} {p50:>7.2f} {p99:>7.2f} {errors:>6}{note}"
            )
        print("  flows are 3 requests each (consent page, Allow, token); their p50/p99 are per request.")
    print()
    print("Goals (each against the floor measured in the same run)")
    for run in runs:
        if run.skipped:
            continue
        api_p99 = run.median("api", "p99_ms")
        token_p99 = max(run.median("code", "p99_ms"), run.median("refresh", "p99_ms"))
        code_ratio, refresh_ratio = run.ratio("code", "floor"), run.ratio("refresh", "floor")
        page_ratio = run.cpu_ratio("page100k", "page100")  # cost: the 100k org's CPU per request over the 100 org's
        goals = [
            (f"GET /api/todos = {run.ratio('api', 'floor'):.2f} of the floor", TARGET_API_FLOOR_RATIO, ">="),
            (f"GET /api/todos CPU = {run.cpu_ratio('api', 'floor'):.2f}x the floor's", TARGET_API_CPU_RATIO, "<="),
            (f"MCP list_todos = {run.ratio('mcp', 'api'):.2f}x the API", TARGET_MCP_API_RATIO, ">="),
            (f"/livez = {run.ratio('livez', 'floor'):.2f} of the floor", TARGET_LIVEZ_FLOOR_RATIO, ">="),
            (f"code {code_ratio:.3f}, refresh {refresh_ratio:.3f} of the floor", TARGET_TOKEN_FLOOR_RATIO, ">="),
            (f"token endpoint p99 = {token_p99:.1f} ms", TARGET_TOKEN_P99_MS, "<"),
            (f"API p99 at {args.connections} clients = {api_p99:.1f} ms", TARGET_API_P99_MS, "<"),
            (f"first page 100k / 100 = {page_ratio:.2f}", TARGET_PAGE_COST_RATIO, "<="),
        ]
        values = [
            run.ratio("api", "floor"),
            run.cpu_ratio("api", "floor"),
            run.ratio("mcp", "api"),
            run.ratio("livez", "floor"),
            min(code_ratio, refresh_ratio),
            token_p99,
            api_p99,
            page_ratio,
        ]
        for (text, target, op), value in zip(goals, values, strict=True):
            ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
            print(f"{run.database:<11} {text:<52} goal {op} {target:<6g} {verdict(ok)}")


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="duration of each measurement (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per database; medians are reported")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument(
        "--databases", default="postgresql,sqlite", help="comma-separated: postgresql, sqlite (default both)"
    )
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto", help="load generator")
    parser.add_argument("--port", type=int, default=0, help="port for gunicorn on 127.0.0.1 (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with gunicorn's logs")
    args = parser.parse_args()
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    if args.seconds <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("--seconds, --rounds and --connections must be positive")
    return args


def stop_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind, so that gunicorn stops and the database is dropped


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.loadgen == "python":
        print("wrk not found (apt-get install wrk): using the Python multi-process client", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="connected-todos-bench-"))
    runs: list[DatabaseRun] = []
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} before the run: other work skews the figures", flush=True)
    try:
        for kind in [d.strip() for d in args.databases.split(",") if d.strip()]:
            if kind not in ("postgresql", "sqlite"):
                raise SystemExit(f"unknown database {kind}")
            if kind == "postgresql" and not postgres_available():
                runs.append(DatabaseRun(kind, skipped=f"PostgreSQL is not reachable at {HOST}:5432"))
                continue
            runs.append(bench_database(kind, args, workdir))
    except BaseException:
        args.keep = True  # keep gunicorn's log for the post-mortem
        raise
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
