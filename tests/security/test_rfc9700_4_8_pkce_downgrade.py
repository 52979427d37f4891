"""RFC 9700 §2.1.1 and §4.8: PKCE with S256 only (RFC 7636); public clients must use it, and a
verifier without a challenge, or a challenge without its verifier, is refused (downgrade)."""

from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from conftest import idp
from conftest import new_code
from conftest import pkce_pair
from conftest import public_code


def test_public_clients_must_send_a_code_challenge(base_url, world):
    client = world.client(redirect_uris=("http://127.0.0.1/cb",), public=True)
    cb = callback_params(idp(base_url, gpt_params(client)))
    assert cb["error"] == "invalid_request" and "code_challenge" in cb["error_description"]


def test_plain_pkce_is_rejected(base_url, gpt):
    verifier, _ = pkce_pair()
    params = gpt_params(gpt, code_challenge=verifier, code_challenge_method="plain")
    assert callback_params(idp(base_url, params))["error"] == "invalid_request"


def test_a_challenge_without_a_method_is_rejected_because_it_would_mean_plain(base_url, gpt):
    _, challenge = pkce_pair()
    params = gpt_params(gpt, code_challenge=challenge)
    assert callback_params(idp(base_url, params))["error"] == "invalid_request"


def test_a_wrong_code_verifier_is_invalid_grant(base_url, org, world):
    _, challenge = pkce_pair()
    client, code = public_code(base_url, org, world, challenge)
    response = exchange(base_url, client, code, style="none", code_verifier=pkce_pair()[0])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_missing_code_verifier_is_rejected_when_a_challenge_was_sent(base_url, org, gpt):
    _, challenge = pkce_pair()
    code = new_code(base_url, org, gpt, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(base_url, gpt, code)  # a confidential client too
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_code_verifier_without_a_challenge_is_rejected(base_url, org, gpt):
    code = new_code(base_url, org, gpt)
    response = exchange(base_url, gpt, code, code_verifier=pkce_pair()[0])
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
