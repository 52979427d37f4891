"""Connected Todos: a todo app for teams that is its own OAuth 2.0 and OpenID Connect provider.

Importing the package does nothing. ``create_app(config)`` builds an app: it reads the settings,
wires the extensions and blueprints, and, outside production, brings the database up to date,
makes a signing key and seeds the demo data. ``app.py`` beside the package maps its modules.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_cors import CORS
from flask_migrate import Migrate
from flask_migrate import upgrade as upgrade_database
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api
from . import idp
from . import mcp_server
from . import operators
from . import pages
from . import settings
from . import web
from .cli import cli
from .cli import seed_demo
from .client_metadata import query_client
from .grants import server
from .keys import SealedKeyError
from .keys import current_signing_key
from .models import db
from .models import ensure_deployment
from .oauth import save_token
from .rules import NAME_MAX
from .todos import TITLE_MAX

BLUEPRINTS = (pages.bp, idp.bp, api.bp, mcp_server.bp, operators.bp)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
migrate = Migrate(render_as_batch=True)  # batch mode lets SQLite alter tables too


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create and configure the app: settings, extensions, blueprints and the database."""
    app = Flask(
        __name__,
        instance_path=os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(settings.from_environment(app.instance_path))
    app.config.update(config or {})
    settings.check(app.config, app.instance_path)
    # Behind a TLS-terminating proxy the request's address, scheme and host come from X-Forwarded-*.
    # Only as many hops as there are proxies are believed: a client can forge the rest, and the
    # per-address rate limits and the audit log rely on the address.
    hops = app.config["TRUSTED_PROXIES"]
    web.init_app(app)
    if not app.config["PUBLIC_URL"]:
        web.log.warning(
            "PUBLIC_URL is not set: the issuer is the request's own origin, which must be a loopback "
            "address (%s). Set PUBLIC_URL to the app's public https origin to serve it anywhere else.",
            ", ".join(settings.LOOPBACK_HOSTS),
        )
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    app.session_interface = web.SessionInterface()
    web.login_manager.user_loader(pages.load_member)
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    # Browser-based MCP clients (the MCP Inspector) call these cross-origin, without cookies.
    CORS(
        app,
        resources=[r"/mcp", r"/.well-known/*", r"/oauth/token", r"/oauth/register", r"/oauth/revoke"],
        origins="*",
        send_wildcard=True,  # no cookies cross-origin: bearer tokens only
        allow_headers=["Authorization", "Content-Type", "MCP-Protocol-Version", "Mcp-Session-Id", "Last-Event-ID"],
        expose_headers=["WWW-Authenticate", "Mcp-Session-Id", "Retry-After"],
        max_age=600,
    )
    server.init_app(app, query_client=query_client, save_token=save_token)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.json.sort_keys = False  # fields in the order the code writes them; sorting cost a page of todos 15 µs
    app.jinja_env.globals.update(name_max=NAME_MAX, title_max=TITLE_MAX)  # the forms' maxlength
    app.jinja_env.filters["shell_quote"] = shlex.quote  # for commands a page asks an operator to run
    for command in cli.commands.values():
        app.cli.add_command(command)
    with app.app_context():
        prepare_database(app)
    return app


def prepare_database(app: Flask) -> None:
    """Outside production, upgrade the schema. Once it is current, make the first signing key, the
    playground's client and the demo data."""
    if db.engine.dialect.name == "sqlite":
        sa.event.listen(db.engine, "connect", sqlite_pragmas)
    elif db.engine.dialect.name == "postgresql":
        sa.event.listen(db.engine, "connect", postgresql_settings)
    if app.config["APP_ENV"] != "production":
        upgrade_database()  # production upgrades in the release phase: flask db upgrade
    if schema_is_current():  # otherwise this is `flask db upgrade` itself, about to bring it up to date
        try:
            current_signing_key()
        except SealedKeyError as error:
            raise SystemExit(
                f"{error} Set KEY_ENCRYPTION_KEY to the key that sealed it. To move to a new key, set "
                "KEY_ENCRYPTION_KEY=NEW,OLD, run `flask --app app reseal-signing-keys`, then drop OLD."
            ) from None
        ensure_deployment()
        operators.ensure_playground_client()
        if app.config["SEED_DEMO"]:
            seed_demo()
    db.engine.dispose()  # gunicorn forks after this; workers must not share connections


def schema_is_current() -> bool:
    """Whether the database is at the newest migration, so that the models match its tables."""
    with db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(ScriptDirectory.from_config(migrate.get_config()).get_heads())


def postgresql_settings(dbapi_connection: Any, _record: Any) -> None:
    """Plan each statement for the values it runs with. psycopg prepares a statement it has run five
    times, and PostgreSQL then plans it once for any values: for a todo page that plan walked the
    primary key through every other organization's todos (20 ms instead of 0.1 ms), as one plan
    cannot fit organizations of a hundred todos and of a hundred thousand alike."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Turn on WAL and foreign keys, and wait for a lock instead of failing at once."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    # With WAL, NORMAL never corrupts the database and halves the cost of each commit (an fsync
    # per WAL checkpoint instead of per transaction); a power cut may lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
