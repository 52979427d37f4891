"""gunicorn settings; gunicorn reads this file from the working directory by itself."""

import gc
import multiprocessing
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(multiprocessing.cpu_count() * 2, 8)))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Create the app once, in the master: tables, signing key and demo data are made a single time.
preload_app = True

# The workers share the master's memory until they write to it, and Python's garbage collector
# writes to every object it visits: a fresh worker's first collections copied the whole preloaded
# app, page by page, and went on visiting its objects for good. So the master collects nothing while
# the app loads, freezes what it built before each fork, and each worker collects only its own
# objects (the gc module's documentation, gc.freeze).
gc.disable()


def pre_fork(_server: object, _worker: object) -> None:
    gc.freeze()


def post_fork(_server: object, _worker: object) -> None:
    gc.enable()


# Production refuses to start without SECRET_KEY or PUBLIC_URL (see connected_todos/settings.py).
raw_env = ["APP_ENV=production"]
# gunicorn itself believes no forwarded header (the scheme, SCRIPT_NAME): the app's ProxyFix reads
# X-Forwarded-* from as many proxies as TRUSTED_PROXIES names, and from no more.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
# The app logs each request itself, with a request id and without the query string, which
# could carry a secret a client put in the wrong place.
accesslog = None
errorlog = "-"
