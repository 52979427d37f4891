"""Profile the hot paths in-process: GET /livez, GET /api/todos and /oauth/token (code and refresh).

It seeds a fresh database exactly as ``bench/run.py`` does, gets tokens through the real flow with
Flask's test client (login form, /idp, Allow, /oauth/token), then for each path measures the mean
wall time per request without a profiler and prints cProfile's top functions.

Usage: ``python bench/profile_paths.py [--database sqlite|postgresql] [-n 2000] [--top 25]``
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import queue
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from run import CSRF_RE
from run import PASSWORD
from run import RATE_LIMIT_ENV
from run import REDIRECT_URI
from run import authorize_params
from run import code_of
from run import database
from run import seed_database
from run import token_body

BASE = "http://localhost"  # the test client's origin, so PUBLIC_URL (issuer, audiences) matches


def login_and_consent(client: Any, seeded: dict[str, Any], email: str) -> None:
    """Log in with the form's CSRF token and allow the client once, as a browser does."""
    page = client.get("/login")
    csrf = CSRF_RE.search(page.get_data(as_text=True))
    query = "/idp?" + urlencode(authorize_params(seeded["client_id"]))
    response = client.post(
        "/login", data={"csrf_token": csrf.group(1), "email": email, "password": PASSWORD, "returnTo": query}
    )
    assert response.status_code == 302, response.status_code
    consent = client.get(query)
    csrf = CSRF_RE.search(consent.get_data(as_text=True))
    response = client.post(query, data={"csrf_token": csrf.group(1), "decision": "allow"})
    assert response.status_code == 302, response.status_code


def new_code(client: Any, seeded: dict[str, Any]) -> str:
    response = client.get("/idp?" + urlencode(authorize_params(seeded["client_id"])))
    assert response.status_code == 302, response.status_code
    return code_of(response.headers["Location"])


def exchange(client: Any, seeded: dict[str, Any], code: str) -> dict[str, Any]:
    data = token_body(seeded, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    response = client.post("/oauth/token", data=data)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def measure(name: str, call: Callable[[int], Any], n: int, top: int, callees: str | None = None) -> None:
    """Mean wall time per call without the profiler, then cProfile's top functions."""
    for i in range(min(50, n)):  # warm caches: templates, compiled statements, keys
        call(i)
    started = time.perf_counter()
    for i in range(n):
        call(n + i)
    mean_us = (time.perf_counter() - started) / n * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        call(2 * n + i)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    if callees:
        stats.sort_stats("cumulative").print_callees(callees)
    print(f"\n===== {name}: {mean_us:,.0f} µs per request in-process (mean of {n}, no profiler) =====")
    print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("-n", type=int, default=2000, help="requests per path (codes are made beforehand)")
    parser.add_argument("--top", type=int, default=25, help="functions to print per ordering")
    parser.add_argument("--callees", help="also print what functions matching this regex call")
    parser.add_argument("--only", help="comma-separated subset of: livez, api, code, refresh")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"livez", "api", "code", "refresh"}
    with (
        tempfile.TemporaryDirectory(prefix="connected-todos-profile-") as tmp,
        database(args.database, Path(tmp)) as url,
    ):
        env = {"DATABASE_URL": url, "PUBLIC_URL": BASE, "SEED_DEMO": "0", "SECRET_KEY": "profile", **RATE_LIMIT_ENV}
        results: queue.Queue[dict[str, Any]] = queue.Queue()
        seed_database(env, results)  # imports the app module with this environment
        seeded = results.get()
        from app import app as flask_app
        from connected_todos.models import db

        browser = flask_app.test_client()
        login_and_consent(browser, seeded, seeded["members"]["org10k"])
        tokens = exchange(browser.application.test_client(), seeded, new_code(browser, seeded))
        api = flask_app.test_client()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        refresh = token_body(seeded, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        if "livez" in only:
            measure("GET /livez", lambda _: api.get("/livez"), args.n, args.top, args.callees)
        if "api" in only:
            measure(
                "GET /api/todos (10,000-todo org)", lambda _: api.get("/api/todos", headers=bearer), args.n, args.top
            )
        if "code" in only:
            codes = [new_code(browser, seeded) for _ in range(3 * args.n + 50)]
            measure("POST /oauth/token code", lambda i: exchange(api, seeded, codes[i]), args.n, args.top, args.callees)
        if "refresh" in only:
            measure(
                "POST /oauth/token refresh",
                lambda _: api.post("/oauth/token", data=refresh),
                args.n,
                args.top,
                args.callees,
            )
        with flask_app.app_context():
            db.engine.dispose()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
