"""Rules: what the app accepts as input, written once for REST, MCP, the web pages and the CLI.

Owns the table of scopes (the words the consent page shows, and which operations need each one),
the redirect URI rules (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1), which client_ids are
metadata document URLs (draft-ietf-oauth-client-id-metadata-document §3), the names people and apps
show (RFC 7591 §5), emails, passwords and roles, safe return paths, and text a database can store.
Nothing here touches the database or the request.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import unquote
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Scope:
    """A scope: the words the consent page shows, and the operations (REST or MCP) that need it."""

    consent: str
    operations: tuple[str, ...] = ()


SCOPES = {
    "openid": Scope("Confirm who you are", ("userinfo",)),
    "profile": Scope("See your name"),
    "email": Scope("See your email address"),
    "offline_access": Scope("Stay connected when you are away"),
    "todos:read": Scope("See your organization's todos", ("getMe", "listTodos", "getTodo")),
    "todos:write": Scope(
        "Create, change and delete your organization's todos", ("createTodo", "updateTodo", "deleteTodo")
    ),
}
DEFAULT_CLIENT_SCOPE = " ".join(SCOPES)


def scope_for(operation: str) -> str:
    """The scope an operation needs, from the table above; an operation not in it is a bug."""
    return next(name for name, scope in SCOPES.items() if operation in scope.operations)


def normalize_scope(scope: str) -> str:
    """Read a comma-separated scope as space-separated: the GPT builder passes its field as typed."""
    return " ".join(scope.replace(",", " ").split())


def scope_problem(scope: str) -> str | None:
    """Why a scope a client registers is not acceptable, or None."""
    if not scope or not set(scope.split()) <= set(SCOPES):
        return f"must use scopes from: {' '.join(SCOPES)}"
    return None


URI_MAX = 500
MAX_REDIRECT_URIS = 10  # per app: enough for every host and port it runs on
GRANT_TYPES = ("authorization_code", "refresh_token")  # the grants an app may use here
# Schemes a browser or the OS would treat as something other than "open this app".
UNSAFE_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"}


# RFC 3986 §2: what a URI may contain at all; anything else (spaces, CR/LF, quotes, <, >, \, non-ASCII)
# is not a URI, and must never reach a header or a page as if it were one.
URI_CHARACTERS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
# RFC 3986 §3.2.2 reg-name, as DNS names have it (RFC 1123 §2.1): labels of letters, digits and
# inner hyphens, 63 characters at most, 253 in all. No "*", no ";", no space: nothing but a host.
DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def host_problem(host: str) -> str | None:
    """Why ``host`` (as urlsplit gives it: lower-case, IPv6 without brackets) is not a valid host."""
    if "%" in host:
        return "must name a host without a zone or escapes (RFC 3986 §3.2.2)"
    try:
        ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or not all(DNS_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return "must name a valid host (RFC 3986 §3.2.2)"
    return None


def parse_uri(uri: str) -> tuple[str, str | None, int | None]:
    """The scheme, host and port of an absolute URI, checked strictly; ValueError says what is wrong."""
    if not URI_CHARACTERS.fullmatch(uri):
        raise ValueError("must use only the characters of a URI (RFC 3986 §2)")
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("must have a port from 1 to 65535") from None
    if port == 0:
        raise ValueError("must have a port from 1 to 65535")
    scheme = parts.scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError("must be an absolute URI with a scheme")
    if parts.netloc and (parts.username is not None or parts.password is not None):
        raise ValueError("must not carry user information")
    host = parts.hostname
    if parts.netloc and (not host or (problem := host_problem(host))):
        raise ValueError(problem if host else "must name a host")
    if "[" in parts.netloc or "]" in parts.netloc:  # only an IPv6 address goes in brackets
        literal = parts.netloc[parts.netloc.find("[") + 1 : parts.netloc.find("]")]
        try:
            if ip_address(literal).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError("must name a valid host (RFC 3986 §3.2.2)") from None
    return scheme, host, port


def origin(uri: str) -> str | None:
    """The origin of ``uri``, serialized from its checked parts (scheme://host[:port], or scheme:
    for a native app's scheme), or None when it does not parse. Only this may reach a header."""
    try:
        scheme, host, port = parse_uri(uri)
    except ValueError:
        return None
    if not host:
        return f"{scheme}:"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port is not None else "")


def is_loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host or "").is_loopback
    except ValueError:
        return False


def redirect_uri_problem(uri: str) -> str | None:
    """Why a redirect URI cannot be registered for a client, or None."""
    try:
        scheme, host, _ = parse_uri(uri)
    except ValueError as error:
        return str(error)
    parts = urlsplit(uri)
    if scheme == "https" and host:
        pass
    elif scheme == "http" and is_loopback_host(parts.hostname):
        pass  # RFC 8252 §7.3 loopback redirect for native apps
    elif re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) and scheme not in UNSAFE_SCHEMES | {"http", "https"}:
        pass  # RFC 8252 §7.1 private-use scheme of a native app, such as cursor://
    else:
        return "must be https, http on a loopback address, or a native app's own scheme"
    if parts.fragment or "#" in uri:
        return "must not have a fragment (RFC 6749 §3.1.2)"
    if len(uri) > URI_MAX:
        return f"must be at most {URI_MAX} characters"
    return None


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Exact match, except that a loopback http URI matches on any port (RFC 8252 §7.3)."""
    if registered == requested:
        return True
    reg, req = urlsplit(registered), urlsplit(requested)
    if reg.scheme != "http" or req.scheme != "http" or not is_loopback_host(reg.hostname):
        return False
    if req.username is not None or req.password is not None or req.fragment:
        return False
    try:
        req.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return (reg.hostname, reg.path, reg.query) == (req.hostname, req.path, req.query)


def link_problem(uri: Any) -> str | None:
    """Why a client's home page or logo link cannot be shown to people, or None."""
    problem = f"must be an https URL of at most {URI_MAX} characters"
    if not isinstance(uri, str) or len(uri) > URI_MAX:
        return problem
    try:
        scheme, host, _ = parse_uri(uri)
    except ValueError:
        return problem
    return None if scheme == "https" and host else problem


CLIENT_ID_MAX = 255
METADATA_URL_CHARACTERS = re.compile(r"https://[A-Za-z0-9\-._~/:%\[\]]+")


def is_metadata_url(client_id: str) -> bool:
    """Whether a client_id is the URL of the client's own metadata document
    (draft-ietf-oauth-client-id-metadata-document §3). The client_ids this app makes are letters
    and digits, so none of them is one (§7.1)."""
    return client_id.startswith("https://")


def metadata_url_problem(url: str) -> str | None:
    """Why a URL cannot be a client_id that names a metadata document (§3), or None."""
    if len(url) > CLIENT_ID_MAX:
        return f"is longer than {CLIENT_ID_MAX} characters"
    # Letters, digits and - . _ ~ / : %, as every real document URL has: the URL is shown in pages
    # and in commands an operator may paste, where ; $ ( ) ' & ! * and the like could do harm.
    if not METADATA_URL_CHARACTERS.fullmatch(url):
        return "must use only letters, digits and - . _ ~ / : %"
    try:
        scheme, host, _ = parse_uri(url)  # no user information, a valid host
    except ValueError as error:
        return str(error)
    parts = urlsplit(url)
    if scheme != "https" or not host:
        return "must be an https URL"
    if not parts.path:
        return "must have a path (§3)"
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):  # %2F and %2E too
        return "must not have . or .. path segments (§3)"
    if "?" in url or "#" in url:
        return "must have no query or fragment (§3)"
    return None


FIELD_LABELS = {"client_name": "The name", "redirect_uris": "The redirect URI", "scope": "The scope"}


class ClientMetadataError(ValueError):
    """A client's metadata breaks a rule. ``field`` is its RFC 7591 §2 name; ``message`` says what
    is wrong in a developer's terms, and ``sentence`` in an operator's."""

    def __init__(self, field: str, problem: str, value: str | None = None) -> None:
        self.field, self.problem, self.value = field, problem, value
        self.message = f"{value if value is not None else field} {problem}."
        self.sentence = " ".join(filter(None, [FIELD_LABELS[field], value, f"{problem}."]))
        super().__init__(self.message)


def check_client_metadata(name: str | None = None, redirect_uris: list[str] = (), scope: str | None = None) -> None:
    """The one check of an app's name, redirect URIs and scope, for every way an app is registered
    or changed: the command line, /setup, dynamic registration (RFC 7591) and the playground."""
    if name is not None and (problem := name_problem(name)):
        raise ClientMetadataError("client_name", problem)
    for uri in redirect_uris:
        if problem := redirect_uri_problem(uri):
            raise ClientMetadataError("redirect_uris", problem, uri[:URI_MAX])
    if scope is not None and (problem := scope_problem(scope)):
        raise ClientMetadataError("scope", problem)


NAME_MAX = 100
# Control and format characters (right-to-left overrides, zero-width spaces, invisible tags),
# separators that break lines, and private code points: in a name they can make one app or
# person pass for another on the consent screen and the members page.
HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}
# Except the joiners that Persian and Indic scripts, and emoji such as 👩‍💻, need.
JOINERS = {"\u200c", "\u200d"}


def name_problem(name: str) -> str | None:
    """Why a name of a member, organization or app cannot be shown to people, or None."""
    if not name.strip():
        return "must not be empty"
    if len(name) > NAME_MAX:
        return f"must be at most {NAME_MAX} characters"
    if any(unicodedata.category(c) in HIDDEN_CATEGORIES and c not in JOINERS for c in name):
        return "must not contain control or formatting characters, such as right-to-left marks"
    return None


ROLES = ("admin", "member")
PASSWORD_MIN = 8


EMAIL_MAX = 254  # RFC 5321 §4.5.3.1.3, less the angle brackets


def normalize_email(email: str) -> str:
    """An email as it is stored and looked up: NFKC (so fullwidth letters are plain ones) and
    lower-case, so that no two spellings of one address are two accounts."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def email_problem(email: str) -> str | None:
    """What is wrong with a (normalized) email, as a sentence for the person, or None. No control
    or format character may hide in it, joiners included: it must read as what it is."""
    if len(email) > EMAIL_MAX or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return "Enter a valid email address."
    if any(unicodedata.category(c) in HIDDEN_CATEGORIES for c in email):
        return "An email address must not contain control or formatting characters."
    return None


def password_problem(password: str) -> str | None:
    if len(password) < PASSWORD_MIN:
        return f"Choose a password of at least {PASSWORD_MIN} characters."
    return None


def member_problem(email: str, name: str, password: str, role: str = "member") -> str | None:
    """What is wrong with a new member's details, as a sentence for the person, or None."""
    if problem := email_problem(email):
        return problem
    if problem := name_problem(name):
        return f"The name {problem}."
    if role not in ROLES:
        return "Choose the role admin or member."
    return password_problem(password)


def is_safe_return_path(target: str | None) -> bool:
    """Accept only a same-origin relative path: no //host, /\\host, scheme or encoded variant."""
    if not target:
        return False
    decoded = target
    for _ in range(3):  # undo layered percent-encoding such as %252F
        decoded = unquote(decoded)
    for value in (target, decoded):
        path = re.split(r"[?#]", value, maxsplit=1)[0]
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            return False
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            return False  # browsers drop tabs and newlines, turning "/\t/host" into "//host"
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            return False
    return True


def error_text(text: str) -> str:
    r"""``text`` as an error_description may carry it: printable ASCII without " and \ (RFC 6749 §5.2)."""
    return re.sub(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]", "?", text)


def bounded_int(text: str, low: int, high: int) -> int:
    """An integer written in ASCII digits, from ``low`` to ``high``; ValueError otherwise. The digits
    are counted before they are converted, so a number of any length costs nothing."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise ValueError(f"must be a whole number from {low} to {high}")
    return int(text)


MAX_PARAMETER_LENGTH = 8192
ID_LIMIT = 2**31  # ids are 32-bit integers on every database


JSON_DEPTH_MAX = 64  # levels of arrays and objects: no message of any protocol here needs more


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value``, walked without recursion, so that no depth
    of input can exhaust the stack."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def storable(value: Any) -> bool:
    """Whether every string in ``value`` is text a database can store: UTF-8, no NUL. Walked
    without recursion, like json_depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:  # a lone surrogate, such as JSON's "\ud800"
                return False
            if "\x00" in item:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


# A cursor is the id of the last row on the previous page: the next page holds the older ones.
# An empty cursor is the first page, as is any id above every id a row can have.
CURSOR_PATTERN = "^([1-9][0-9]{0,9})?$"


def decode_cursor(cursor: str) -> int | None:
    """The id a page starts below, or None for the first page; ValueError for a made-up cursor."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("cursor must be the next_cursor of the previous page.")
    return int(cursor) if cursor and int(cursor) < ID_LIMIT else None
