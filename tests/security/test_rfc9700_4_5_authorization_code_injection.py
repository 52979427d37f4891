"""RFC 9700 §4.5 and RFC 6749 §4.1.2, §10.5: an authorization code is unguessable, stored hashed,
short-lived, single-use, and bound to its client and redirect URI; a replay revokes what it gave."""

import threading

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD
from conftest import Person
from conftest import bearer
from conftest import csrf_of
from conftest import exchange
from conftest import new_code
from conftest import token_request


def test_a_code_has_at_least_128_bits_and_is_stored_hashed(base_url, org, gpt, world):
    code = new_code(base_url, org, gpt)
    assert len(code) >= 43 and code.isalnum()
    stored = world.sql(sa.text("SELECT code_hash FROM authorization_code")).scalars().all()
    assert code not in stored and all(len(h) == 64 for h in stored)


def test_a_code_redeemed_twice_fails_and_revokes_the_first_tokens(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    first = exchange(base_url, gpt, code).json()
    assert requests.get(f"{base_url}/api/me", headers=bearer(first["access_token"])).status_code == 200
    second = exchange(base_url, gpt, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert requests.get(f"{base_url}/api/me", headers=bearer(first["access_token"])).status_code == 401
    refresh = token_request(base_url, gpt, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def test_of_concurrent_redemptions_exactly_one_succeeds(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    responses: list[requests.Response] = []
    barrier = threading.Barrier(20)

    def redeem() -> None:
        barrier.wait()
        responses.append(exchange(base_url, gpt, code))

    threads = [threading.Thread(target=redeem) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200] + [400] * 19
    # The replays are an attack on the code (RFC 9700 §4.5): the one token issued is revoked.
    token = next(r.json()["access_token"] for r in responses if r.status_code == 200)
    assert requests.get(f"{base_url}/api/me", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize(("age", "error"), [(300 - 5, None), (300 + 1, "invalid_grant")])  # five minutes
def test_a_code_expires_five_minutes_after_it_is_issued(base_url, org, gpt, clock, age, error):
    """RFC 6749 §4.1.2: a short lifetime; measured by the clock the app reads, not by editing rows."""
    code = new_code(base_url, org, gpt)
    clock.shift(age)
    response = exchange(base_url, gpt, code)
    assert (response.json().get("error") if response.status_code != 200 else None) == error


def test_a_code_is_bound_to_its_client(base_url, org, gpt, world):
    other = world.client(name="Other")
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, other.__class__(other.client_id, other.client_secret, gpt.redirect_uri), code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert exchange(base_url, gpt, code).status_code == 200  # the rightful client still can


def test_a_code_is_bound_to_its_redirect_uri(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    response = token_request(
        base_url,
        gpt,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://chatgpt.com/aip/g-other/oauth/callback",
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("how", ["disconnect", "password"])
def test_a_code_not_yet_redeemed_dies_with_the_members_access(base_url, world, gpt, how):
    # Revoking must void the member's pending codes too, or a code issued a moment before the
    # revocation would start a new 90-day grant.
    org = world.org()
    code = new_code(base_url, org, gpt)
    person = Person(base_url, org.admin_email)
    person.login()
    if how == "disconnect":
        page = person.get("/settings/connected-apps")
        person.post(f"/settings/connected-apps/{gpt.client_id}/revoke", {"csrf_token": csrf_of(page.text)})
    else:
        page = person.get("/settings/password")
        form = {"csrf_token": csrf_of(page.text), "current_password": PASSWORD, "new_password": PASSWORD + "!"}
        assert person.post("/settings/password", form).status_code == 302
    answer = exchange(base_url, gpt, code)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
