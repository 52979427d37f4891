"""Settings: SECRET_KEY in production, the development key, DATABASE_URL, demo data."""

import gc
import os
import runpy
import subprocess
import sys
from pathlib import Path

from conftest import KEY_ENCRYPTION_KEY

ROOT = Path(__file__).parent.parent


def start(tmp_path, code: str = "print('started', app.app.config['SECRET_KEY'][:4])", **env):
    """Import the app in a fresh process, as `flask` or gunicorn would, and run ``code`` there."""
    unset = ("SECRET_KEY", "KEY_ENCRYPTION_KEY", "APP_ENV", "DATABASE_URL", "PUBLIC_URL")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment.update(DATABASE_URL=f"sqlite:///{tmp_path}/app.db", **env)
    code = "import app; " + code
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = start(tmp_path, APP_ENV="production")
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_production_starts_with_a_secret_key_and_public_url(tmp_path):
    result = start(
        tmp_path,
        APP_ENV="production",
        SECRET_KEY="s" * 40,
        KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY,
        PUBLIC_URL="https://todos.example.com",
        RATELIMIT_STORAGE_URI="memory://",
        SEED_DEMO="0",
    )
    assert result.returncode == 0 and "started ssss" in result.stdout


def test_production_refuses_to_start_without_public_url(tmp_path):
    # RFC 9700 §4.13: the issuer must not follow a Host header an attacker chose.
    result = start(
        tmp_path,
        APP_ENV="production",
        SECRET_KEY="s" * 40,
        KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY,
        RATELIMIT_STORAGE_URI="memory://",
        SEED_DEMO="0",
    )
    assert result.returncode != 0 and "PUBLIC_URL is not set" in result.stderr


def test_an_empty_database_gets_the_demo_organization_once(tmp_path):
    first = start(tmp_path, SECRET_KEY="k" * 40, SEED_DEMO="1")
    assert "admin@example.com" in first.stderr and "password" in first.stderr
    second = start(tmp_path, SECRET_KEY="k" * 40, SEED_DEMO="1")
    assert "admin@example.com" not in second.stderr


def test_development_keeps_a_generated_key_in_instance(app):
    key_file = Path(app.instance_path) / "secret_key"
    assert key_file.exists() and oct(key_file.stat().st_mode)[-3:] == "600"


def test_postgres_urls_as_hosts_give_them_use_psycopg(app, monkeypatch):
    from connected_todos.settings import database_url

    assert database_url("postgres://u:p@db.example.com:5432/todos", app.instance_path) == (
        "postgresql+psycopg://u:p@db.example.com:5432/todos"
    )


def test_livez_and_healthz(base_url):
    import requests

    assert requests.get(f"{base_url}/livez").json() == {"status": "ok"}
    health = {"status": "ok", "database": "ok", "rate_limit_store": "ok"}
    assert requests.get(f"{base_url}/healthz").json() == health


def test_settings_from_env_files_lose_their_trailing_newline(tmp_path):
    # An initial access token pasted with a newline must not close registration to its own holder.
    code = "print(repr(app.app.config['INITIAL_ACCESS_TOKEN']))"
    result = start(tmp_path, code, INITIAL_ACCESS_TOKEN=" token-value\n")
    assert result.returncode == 0 and result.stdout.strip() == "'token-value'"


def test_trusted_proxies_must_be_a_number(tmp_path):
    result = start(tmp_path, TRUSTED_PROXIES="one")
    assert result.returncode != 0 and "TRUSTED_PROXIES must be a number" in result.stderr


def test_development_keeps_a_generated_key_encryption_key_in_instance(app):
    key_file = Path(app.instance_path) / "key_encryption_key"
    assert key_file.exists() and oct(key_file.stat().st_mode)[-3:] == "600"
    assert app.config["KEY_ENCRYPTION_KEY"] == key_file.read_text().strip()


def test_a_release_phase_without_app_env_seeds_no_demo_operator(tmp_path):
    # The release phase runs flask db upgrade outside gunicorn.conf.py. Wherever a database or a
    # public URL is configured, no demo organization and no operator may appear, whatever APP_ENV says.
    code = "from connected_todos.models import Member, db; app.app.app_context().push(); print(Member.query.count())"
    release = start(tmp_path, code, PUBLIC_URL="https://todos.example.com", SECRET_KEY="k" * 40)
    assert release.returncode == 0 and release.stdout.split()[-1] == "0" and "Demo organization" not in release.stderr


def test_production_refuses_a_short_secret_key(tmp_path):
    result = start(tmp_path, APP_ENV="production", SECRET_KEY="x", KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY)
    assert result.returncode != 0 and "shorter than 32 characters" in result.stderr


def test_production_refuses_limits_counted_apart_in_each_worker(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": "s" * 40, "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY}
    result = start(tmp_path, PUBLIC_URL="https://todos.example.com", **env)
    assert result.returncode != 0 and "RATELIMIT_STORAGE_URI is not set" in result.stderr


def test_gunicorn_workers_do_not_collect_the_preloaded_app():
    """gunicorn.conf.py: the master loads the app without collecting and freezes it before each
    fork, so that a worker's collections neither copy nor visit the master's objects (gc.freeze)."""
    conf = runpy.run_path(str(Path(__file__).parent.parent / "gunicorn.conf.py"))
    try:
        assert conf["preload_app"] and not gc.isenabled()
        conf["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
        conf["post_fork"](None, None)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
