"""Connected Todos: the entry point (`flask --app app run`, `gunicorn app:app`).

The application is the package `connected_todos/`, one module per concern. Each module imports
only the ones listed above it, so the map reads from the ground up:

  settings       the environment: every variable, its default, and the production refusals
  rules          input rules: the scope table, redirect URIs, names, emails, passwords, roles
  models         the tables (typed SQLAlchemy), secrets kept as SHA-256, keyset pages
  web            extensions, the request log, security headers, errors per protocol
  outbound       the one way to fetch from another host: https, public addresses only, capped
  registry       audit log, organizations, members, apps, consent, and revoke_grants: the one
                 way access ends
  client_metadata  apps whose client_id is the URL of their metadata document (CIMD), kept as
                 HTTP caching allows, pinned by an operator, and their keys
  todos          the todo rules, queries and JSON shapes shared by pages, REST and MCP
  keys           signing keys in the database, their rotation and each process's parsed copy
  tokens         the bearer check: JWT validation (RFC 9068), revocation lookup, challenges
  assertions     private_key_jwt client authentication (RFC 7523)
  oauth          the Authlib server: requests, client authentication, resources, token storage,
                 revocation and introspection
  registration   dynamic client registration (RFC 7591)
  grants         the code grant with PKCE and ID tokens, the refresh grant, and `server`
  idp            /idp and consent, /oauth/*, /.well-known/*
  pages          what a member does in the browser: login, todos, members, settings
  api            the REST API and openapi.yaml
  mcp_tools      the MCP tools, search and fetch, and the MCP Apps view of the todos
  mcp_server     /mcp: both MCP eras (2026-07-28 stateless; 2025 initialize), on the SDK's models
  operators      /setup, the audit log, and the playground (OAuth, then MCP and the view)
  cli            `flask --app app …` commands and the demo data
  __init__       create_app(config)

Where a request goes:
- A member's browser: web (hooks) → pages → todos or registry.
- An authorization request: idp.authorize → grants (the code) → registry (consent).
- A token request: idp.issue_token → oauth (client authentication) → grants → oauth.save_token.
- A bearer request: api or mcp_server → tokens.authenticate_bearer → todos.
"""

from connected_todos import create_app

app = create_app()
