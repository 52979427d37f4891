"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02, MCP
authorization §Client ID Metadata Documents): an app whose client_id is the https URL of a
document that describes it, served here over real https from loopback with a test CA."""

import base64
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from datetime import timedelta
from email.message import Message
from ipaddress import ip_address
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
from conftest import Person
from conftest import callback_params
from conftest import csrf_of
from conftest import idp
from conftest import logged_in
from conftest import pkce_pair
from conftest import rpc
from conftest import setting
from document_host import HostileHost
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from connected_todos import outbound
from connected_todos.models import Client
from connected_todos.models import ClientMetadataDocument
from connected_todos.models import db
from connected_todos.models import utcnow
from connected_todos.outbound import FetchError
from connected_todos.outbound import fetch_json
from connected_todos.outbound import freshness
from connected_todos.outbound import special_use
from connected_todos.rules import metadata_url_problem

CALLBACK = "http://127.0.0.1/callback"


def document(url: str, **fields) -> dict:
    """A document as an MCP client publishes it: public, with a loopback callback."""
    return {
        "client_id": url,
        "client_name": "Example Agent",
        "redirect_uris": [CALLBACK],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        **fields,
    }


def publish(documents, **fields) -> str:
    """A new document at a path of its own; its URL, which is its client_id."""
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, document(url, **fields), Cache_Control="max-age=300")
    return url


def params(url: str, challenge: str, redirect_uri: str = CALLBACK, **extra) -> dict:
    return {
        "response_type": "code",
        "client_id": url,
        "redirect_uri": redirect_uri,
        "scope": "todos:read todos:write",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def hits(documents, url: str) -> int:
    return documents.hits.get(urlsplit(url).path, 0)


def refused_page(operator: Person, url: str, **extra) -> requests.Response:
    """/idp for a client_id URL, as an operator sees it (with the host's own words); the answer
    must be a page, never a redirect (RFC 6749 §4.1.2.1)."""
    response = operator.get("/idp?" + urlencode(params(url, pkce_pair()[1], **extra)))
    assert response.status_code == 400 and "Location" not in response.headers, response.text[:300]
    assert "text/html" in response.headers["Content-Type"]
    return response


# ---- The whole flow ----------------------------------------------------------------------------


def test_an_app_described_by_its_document_connects_refreshes_and_calls_mcp(base_url, org, documents):
    url = publish(documents)
    verifier, challenge = pkce_pair()
    person = Person(base_url, org.admin_email)
    consent = person.authorize(params(url, challenge, resource=f"{base_url}/mcp"), decision=None)
    # CIMD §8.5 and the MCP spec: the page names the document's host and the redirect host, says
    # that the app described itself, and warns that every redirect goes to this computer.
    assert "Example Agent" in consent.text and "described itself" in consent.text
    assert f"127.0.0.1:{documents.port}" in consent.text and "127.0.0.1" in consent.text
    assert "a program on your own computer" in consent.text
    answer = person.post(consent.url, {"csrf_token": csrf_of(consent.text), "decision": "allow"})
    code = callback_params(answer)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": url}
    tokens = requests.post(f"{base_url}/oauth/token", data={**data, "code_verifier": verifier}).json()
    assert tokens["token_type"] == "Bearer" and "refresh_token" in tokens
    tools = rpc(base_url, tokens["access_token"], "tools/list").json()["result"]["tools"]
    assert "add_todo" in {tool["name"] for tool in tools}
    renewed = requests.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": url},
    )
    assert renewed.status_code == 200 and renewed.json()["refresh_token"] != tokens["refresh_token"]  # rotated
    assert hits(documents, url) == 1  # fresh for five minutes, as its Cache-Control says


def test_a_loopback_redirect_may_use_any_port_rfc8252_7_3(base_url, org, documents):
    url = publish(documents)
    answer = Person(base_url, org.admin_email).authorize(params(url, pkce_pair()[1], "http://127.0.0.1:53682/callback"))
    assert answer.headers["Location"].startswith("http://127.0.0.1:53682/callback?code=")


def test_the_app_is_shown_by_name_and_url_to_the_member_the_operator_and_the_audit_log(
    base_url, org, documents, operator
):
    url = publish(documents, client_name="Listed Agent")
    Person(base_url, operator.email).authorize(params(url, pkce_pair()[1]))
    connected_apps = operator.get("/settings/connected-apps").text
    assert "Listed Agent" in connected_apps and url in connected_apps
    setup = operator.get("/setup").text
    assert "Listed Agent" in setup and url in setup
    audit = operator.get("/setup/audit").text
    assert url in audit and "consent_given" in audit
    page = operator.get(f"/setup/clients/~{base64.urlsafe_b64encode(url.encode()).decode().rstrip('=')}")
    assert page.status_code == 200 and url in page.text and "metadata document" in page.text


# ---- What a document must say (§4, §4.1) -------------------------------------------------------


def test_a_redirect_uri_the_document_does_not_list_is_refused_cimd_4_2(base_url, documents, operator):
    url = publish(documents)
    page = refused_page(operator, url, redirect_uri="https://evil.example/callback")
    assert "is not listed in Example Agent" in page.text
    assert "Add this callback URL" not in page.text  # the document decides, not an operator


def test_a_document_whose_client_id_differs_from_its_url_is_refused_cimd_4(base_url, documents, operator):
    url = documents.url(f"/clients/{secrets.token_hex(6)}.json")
    documents.put(urlsplit(url).path, document(url + "x"))
    assert "not its own URL" in refused_page(operator, url).text


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "client_secret_jwt"])
def test_a_secret_based_auth_method_is_refused_cimd_4_1(base_url, documents, method, operator):
    url = publish(documents, token_endpoint_auth_method=method)
    assert "use none or private_key_jwt" in refused_page(operator, url).text


def test_a_document_with_a_client_secret_or_a_published_shared_key_is_refused_cimd_4_1(base_url, documents, operator):
    assert "client_secret" in refused_page(operator, publish(documents, client_secret="s3cret")).text
    oct_key = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k"}]}
    url = publish(documents, token_endpoint_auth_method="private_key_jwt", jwks=oct_key)
    assert "not an RSA, EC or OKP public key" in refused_page(operator, url).text


def test_a_document_without_a_name_or_redirect_uris_is_refused(base_url, documents, operator):
    unnamed = document("")
    del unnamed["client_name"]
    url = documents.url(f"/clients/{secrets.token_hex(6)}.json")
    documents.put(urlsplit(url).path, {**unnamed, "client_id": url})
    assert "has no client_name" in refused_page(operator, url).text
    url = publish(documents, redirect_uris=[])
    assert "redirect_uris" in refused_page(operator, url).text


def test_a_document_that_is_too_large_is_refused_cimd_8_7(base_url, documents, operator):
    url = publish(documents, padding="x" * 6000)
    assert "larger than 5120 bytes" in refused_page(operator, url).text


def test_a_redirect_is_not_followed_cimd_5(base_url, documents, operator):
    target = publish(documents)
    path = f"/moved/{secrets.token_hex(6)}.json"
    documents.put(path, b"", status=302, Location=target)
    page = refused_page(operator, documents.url(path))
    assert "answered HTTP 302" in page.text and hits(documents, target) == 0


def test_a_client_id_on_a_private_address_is_not_fetched_cimd_8_6(app, base_url, document_host, monkeypatch, operator):
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(document_host.ca))
    url = publish(document_host)  # CIMD_ALLOW_LOOPBACK is off here, as in production
    for client_id in (url, url.replace("127.0.0.1", "localhost")):
        assert "an address that is not public" in refused_page(operator, client_id).text
    assert hits(document_host, url) == 0


def test_a_plain_http_client_id_names_no_document_cimd_3(base_url, documents, operator):
    url = publish(documents).replace("https://", "http://")
    assert "No app with the client_id" in refused_page(operator, url).text
    assert hits(documents, url) == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://client.example", "must have a path"),
        ("https://client.example/a/../b.json", "path segments"),
        ("https://client.example/a/%2e%2e/b.json", "path segments"),
        ("https://client.example/c.json?v=1", "only letters, digits"),  # §3: no query, nor fragment
        ("https://client.example/c.json#f", "only letters, digits"),
        ("https://user:pw@client.example/c.json", "only letters, digits"),  # nor user information
        ("https://client.example/x/..%2f..%2fother/c.json", "path segments"),
        ("https://h.example/c.json;touch$IFS/tmp/x", "only letters, digits"),  # nothing a shell reads
        ("https://client.example/" + "a" * 260, "longer than 255"),
    ],
)
def test_the_client_id_url_rules_cimd_3(url, problem):
    assert problem in metadata_url_problem(url)


def test_a_valid_client_id_url_passes_cimd_3():
    assert metadata_url_problem("https://claude.ai/oauth/mcp-oauth-client-metadata") is None
    assert metadata_url_problem("https://client.example:8443/oauth/client.json") is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata services
        "::a9fe:a9fe",  # IPv4-compatible, outside 2000::/3
        "::ffff:0:a9fe:a9fe",  # SIIT
        "64:ff9b:1::a9fe:a9fe",  # a network's own NAT64 (RFC 8215)
        "fec0::1",  # site-local
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
        "192.0.0.8",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fc00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
        "2001:db8::1",
    ],
)
def test_special_use_addresses_are_refused_rfc6890(address):
    assert special_use(ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_fetched(address):
    assert not special_use(ip_address(address))


# ---- Caching (§5.2, RFC 9111) ------------------------------------------------------------------


def test_a_kept_document_is_used_until_it_goes_stale_then_revalidated_with_its_etag(app, base_url, documents):
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, document(url), Cache_Control="max-age=120", ETag='"v1"')
    for _ in range(3):
        assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302  # to the login page
    assert documents.hits[path] == 1
    with app.app_context():
        db.session.execute(sa.update(ClientMetadataDocument).values(fresh_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302
    assert documents.hits[path] == 2 and documents.requests[-1].get("If-None-Match") == '"v1"'  # a 304 answered


def test_a_failed_fetch_and_an_invalid_document_are_not_kept_cimd_5_2(base_url, documents, operator):
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, b"{}", status=500, Cache_Control="max-age=300")
    assert "answered HTTP 500" in refused_page(operator, url).text
    documents.put(path, document(url + "/other"), Cache_Control="max-age=300")
    assert "not its own URL" in refused_page(operator, url).text
    documents.put(path, document(url), Cache_Control="max-age=300")
    assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302
    assert documents.hits[path] == 3


def test_freshness_follows_cache_control_within_bounds_rfc9111_4_2():
    def lifetime(**headers: str) -> int:
        message = Message()
        for name, value in headers.items():
            message[name.replace("_", "-")] = value
        return freshness(message)

    assert lifetime(Cache_Control="max-age=600") == 600
    assert lifetime(Cache_Control="max-age=600", Age="100") == 500
    assert lifetime(Cache_Control="no-store, max-age=600") == 0
    assert lifetime(Cache_Control="no-cache") == 0
    assert lifetime(Cache_Control="max-age=99999999") == 24 * 3600
    assert lifetime() == outbound.HEURISTIC_FRESHNESS
    assert lifetime(Date="Fri, 27 Nov 2026 10:00:00 GMT", Expires="Fri, 27 Nov 2026 10:10:00 GMT") == 600
    assert lifetime(Expires="0") == 0  # §5.3: an invalid date is in the past


def test_the_registry_of_unconnected_described_apps_is_bounded(app, base_url, documents, monkeypatch):
    from connected_todos import client_metadata

    monkeypatch.setattr(client_metadata, "UNCONNECTED_KEPT", 2)
    urls = [publish(documents) for _ in range(4)]
    for url in urls:
        assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302
    with app.app_context():
        kept = set(db.session.scalars(sa.select(Client.client_id).where(Client.client_id.in_(urls))))
    assert kept == set(urls[-2:])


# ---- The token endpoint, and a host that turns servers away ------------------------------------


def test_the_token_endpoint_never_fetches_a_url_it_has_not_met_at_idp(base_url, documents):
    url = publish(documents)
    data = {"grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK, "client_id": url}
    response = requests.post(f"{base_url}/oauth/token", data={**data, "code_verifier": "v" * 43})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert hits(documents, url) == 0


def test_a_stale_document_that_cannot_be_fetched_makes_the_app_unknown_cimd_5_1(app, base_url, org, documents):
    url = publish(documents)
    verifier, challenge = pkce_pair()
    code = callback_params(Person(base_url, org.admin_email).authorize(params(url, challenge)))["code"]
    documents.put(urlsplit(url).path, b"", status=503)
    with app.app_context():
        db.session.execute(sa.update(ClientMetadataDocument).values(fresh_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": url}
    response = requests.post(f"{base_url}/oauth/token", data={**data, "code_verifier": verifier})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_an_operator_pins_a_document_the_server_cannot_fetch(app, base_url, org, documents, tmp_path, operator):
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, b"<html>Just a moment...</html>", status=403, Content_Type="text/html")
    page = refused_page(operator, url)
    assert "answered HTTP 403" in page.text and f"pin-client-metadata {url} client.json" in page.text
    copy = tmp_path / "client.json"
    copy.write_text(json.dumps(document(url, client_name="Pinned Agent")))
    result = app.test_cli_runner().invoke(args=["pin-client-metadata", url, str(copy)])
    assert result.exit_code == 0, result.output
    answer = Person(base_url, org.admin_email).authorize(params(url, pkce_pair()[1]))
    assert "code=" in answer.headers["Location"] and documents.hits[path] == 1  # never fetched again
    result = app.test_cli_runner().invoke(args=["unpin-client-metadata", url])
    assert result.exit_code == 0 and "fetched from its host again" in result.output
    assert "answered HTTP 403" in refused_page(operator, url).text


def test_a_pinned_copy_is_checked_like_a_fetched_one(app, documents, tmp_path):
    url = documents.url(f"/clients/{secrets.token_hex(6)}.json")
    copy = tmp_path / "client.json"
    copy.write_text(json.dumps(document("https://elsewhere.example/client.json")))
    result = app.test_cli_runner().invoke(args=["pin-client-metadata", url, str(copy)])
    assert result.exit_code == 1 and "not its own URL" in result.output


def test_the_rate_of_fetches_from_idp_is_limited_per_address(app, base_url, documents):
    url = publish(documents)
    with setting(app, "CLIENT_METADATA_RATE_LIMIT", "2 per minute"):
        statuses = [idp(base_url, params(url, pkce_pair()[1])).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]


def test_dynamic_registration_still_works_beside_documents(base_url, org, world, documents):
    from conftest import mcp_client
    from conftest import mcp_token

    assert "access_token" in mcp_token(base_url, org.admin_email, mcp_client(world))


# ---- The fetch itself --------------------------------------------------------------------------


def test_a_host_that_never_answers_times_out(monkeypatch, documents):
    monkeypatch.setattr(outbound, "TIMEOUT", 0.5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held = []  # the accepted connection stays open, and silent
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    with pytest.raises(FetchError, match="seconds"):
        fetch_json(f"https://127.0.0.1:{silent.getsockname()[1]}/c.json", max_bytes=5120, allow_loopback=True)
    silent.close()


@pytest.mark.parametrize("behaviour", ["endless_continue", "endless_trailers", "dripped_headers"])
def test_a_host_that_talks_on_or_drips_is_cut_off_at_the_deadline(documents, monkeypatch, behaviour):
    monkeypatch.setattr(outbound, "TIMEOUT", 1.0)
    host = HostileHost(documents, behaviour)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match=r"seconds|more than"):
            fetch_json(host.url(), max_bytes=5120, allow_loopback=True)
    finally:
        host.close()
    assert time.monotonic() - started < 2.5  # the whole fetch, not each read


def test_a_certificate_from_an_unknown_ca_is_refused(documents, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")  # the system's CAs only
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(FetchError, match="certificate"):
        fetch_json(publish(documents), max_bytes=5120, allow_loopback=True)


def test_only_json_objects_are_accepted(documents):
    path = f"/clients/{secrets.token_hex(6)}.json"
    documents.put(path, b"[1, 2]")
    with pytest.raises(FetchError, match="not a JSON object"):
        fetch_json(documents.url(path), max_bytes=5120, allow_loopback=True)
    documents.put(path, b"{}", Content_Type="text/html")
    with pytest.raises(FetchError, match="not served as application/json"):
        fetch_json(documents.url(path), max_bytes=5120, allow_loopback=True)
    documents.put(path, b"[" * 3000)
    with pytest.raises(FetchError, match="not valid JSON"):
        fetch_json(documents.url(path), max_bytes=5120, allow_loopback=True)


def test_an_operator_cannot_add_a_redirect_uri_to_a_described_app(app, base_url, documents, operator):
    url = publish(documents)
    assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302
    result = app.test_cli_runner().invoke(args=["add-redirect-uri", url, "https://other.example/cb"])
    assert result.exit_code == 1 and "metadata document lists them" in result.output


def test_a_described_app_can_be_disconnected_by_its_member(base_url, org, documents):
    url = publish(documents)
    person = logged_in(base_url, org.member_email)
    callback_params(person.authorize(params(url, pkce_pair()[1])))
    page = person.get("/settings/connected-apps")
    form = page.text.split("Example Agent")[1]
    action = form.split('action="')[1].split('"')[0]
    assert person.post(action, {"csrf_token": csrf_of(page.text)}).status_code == 302
    assert "Example Agent can no longer act for you" in person.get("/settings/connected-apps").text
    assert url not in person.get("/settings/connected-apps").text


# ---- What an adversarial review found ----------------------------------------------------------


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "client_id",
                "client_name",
                "redirect_uris",
                "grant_types",
                "response_types",
                "scope",
                "client_uri",
                "logo_uri",
                "token_endpoint_auth_method",
                "jwks",
                "jwks_uri",
                "client_secret",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.just("https://[::1"),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
    )
)
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None)
def test_any_document_is_accepted_or_refused_in_words_never_a_crash(document):
    from connected_todos.client_metadata import MetadataDocumentError
    from connected_todos.client_metadata import describe

    url = "https://agent.example/client.json"
    for candidate in (document, {**document, "client_id": url}):
        with contextlib.suppress(MetadataDocumentError):
            describe(url, candidate)


@pytest.mark.parametrize(
    "fields",
    [
        {"response_types": 5},
        {"response_types": None},
        {"response_types": "xcodex"},
        {"grant_types": [["authorization_code"]]},
        {"client_uri": "https://[::1"},
        {"logo_uri": "https://a]b.example/"},
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "EC", "crv": "P-999"}]}},
    ],
)
def test_malformed_fields_are_refused_in_words(base_url, documents, operator, fields):
    assert "does not describe an app" in idp(base_url, params(publish(documents, **fields), pkce_pair()[1])).text


@pytest.mark.parametrize("body", [{"client_uri": "https://[::1"}, {"grant_types": [["x"]]}, {"grant_types": [{}]}])
def test_malformed_registration_fields_are_refused_rfc7591_3_2_2(base_url, body):
    response = requests.post(f"{base_url}/oauth/register", json={"redirect_uris": [CALLBACK], **body})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"


def test_a_person_sees_our_words_and_an_operator_the_hosts_and_how_to_pin(base_url, documents, operator):
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, document(url + "?sign-in-again-at-evil.example"))  # words the host chose
    stranger = idp(base_url, params(url, pkce_pair()[1]))
    assert stranger.status_code == 400 and "evil.example" not in stranger.text
    assert "does not describe an app this server accepts" in stranger.text
    documents.put(path, b"", status=403)
    stranger = idp(base_url, params(url, pkce_pair()[1]))
    assert "could not be fetched" in stranger.text and "pin-client-metadata" not in stranger.text
    seen = refused_page(operator, url)
    assert "answered HTTP 403" in seen.text and f"pin-client-metadata {url} client.json" in seen.text


def test_a_long_or_odd_etag_is_not_kept(app, base_url, documents):
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, document(url), ETag='"' + "e" * 300 + '"')
    assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302
    with app.app_context():
        client = db.session.scalar(sa.select(Client).where(Client.client_id == url))
        assert client.document.etag is None


def test_a_client_id_in_a_path_that_no_column_could_hold_is_a_404(base_url, operator):
    encoded = base64.urlsafe_b64encode(b"https://a.example/\x00").decode().rstrip("=")
    assert operator.get(f"/setup/clients/~{encoded}").status_code == 404
    page = operator.get("/settings/connected-apps")
    response = operator.post(f"/settings/connected-apps/~{encoded}/revoke", {"csrf_token": csrf_of(page.text)})
    assert response.status_code == 404


def test_a_failing_key_set_or_stale_document_is_fetched_at_most_once_a_minute(app, base_url, org, documents):
    from test_private_key_jwt import Agent

    agent = Agent(base_url, documents)
    code, verifier = agent.code(org)
    documents.put(agent.jwks_path, b"", status=503)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": agent_callback(),
        "code_verifier": verifier,
    }
    for _ in range(5):
        assert agent.token({**agent.authenticated(), **data}).status_code == 401
    assert documents.hits[agent.jwks_path] == 1  # the first try; the four after it wait a minute
    with app.app_context():
        db.session.execute(sa.update(ClientMetadataDocument).values(fresh_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    document_path = urlsplit(agent.client_id).path
    documents.put(document_path, b"", status=503)
    before = documents.hits[document_path]
    for _ in range(5):
        assert agent.token({**agent.authenticated(), **data}).status_code == 401
    assert documents.hits[document_path] - before == 1


def agent_callback() -> str:
    from test_private_key_jwt import CALLBACK as AGENT_CALLBACK

    return AGENT_CALLBACK


def test_fetching_a_document_leaves_no_trace_in_the_audit_log_until_a_member_allows_it(base_url, documents, operator):
    url = publish(documents)
    assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302
    assert url not in operator.get("/setup/audit").text


def test_an_operator_blocks_a_described_app_and_it_stays_blocked(base_url, org, documents, operator):
    url = publish(documents, client_name="Unwanted Agent")
    callback_params(Person(base_url, org.admin_email).authorize(params(url, pkce_pair()[1])))
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    page = operator.get(f"/setup/clients/~{encoded}")
    response = operator.post(f"/setup/clients/~{encoded}/delete", {"csrf_token": csrf_of(page.text)})
    assert response.status_code == 302
    assert "has blocked" in refused_page(operator, url).text  # its document cannot bring it back
    page = operator.get(f"/setup/clients/~{encoded}")
    assert "Blocked" in page.text
    operator.post(f"/setup/clients/~{encoded}/unblock", {"csrf_token": csrf_of(page.text)})
    assert idp(base_url, params(url, pkce_pair()[1])).status_code == 302


def test_a_described_app_is_given_no_secret(app, base_url, documents):
    from test_private_key_jwt import Agent

    agent = Agent(base_url, documents)
    assert idp(base_url, params(agent.client_id, pkce_pair()[1], redirect_uri=agent_callback())).status_code == 302
    result = app.test_cli_runner().invoke(args=["rotate-client-secret", agent.client_id])
    assert result.exit_code == 1 and "no client secret" in result.output


def test_the_warning_follows_the_redirect_asked_for_not_the_list(base_url, org, documents):
    url = publish(documents, redirect_uris=["https://agent.example/callback", CALLBACK])
    page = Person(base_url, org.admin_email).authorize(params(url, pkce_pair()[1]), decision=None)
    assert "a program on your own computer" in page.text


def test_a_changed_list_of_redirects_asks_for_consent_again_cimd_8_4(app, base_url, org, documents):
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = documents.url(path)
    documents.put(path, document(url, client_name="Shifting Agent"))
    person = Person(base_url, org.admin_email)
    callback_params(person.authorize(params(url, pkce_pair()[1])))
    assert "code=" in person.authorize(params(url, pkce_pair()[1]), decision=None).headers["Location"]  # remembered
    documents.put(path, document(url, client_name="Shifting Agent", redirect_uris=[CALLBACK, "https://new.example/cb"]))
    with app.app_context():
        db.session.execute(sa.update(ClientMetadataDocument).values(fresh_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert 'name="decision"' in person.authorize(params(url, pkce_pair()[1]), decision=None).text
