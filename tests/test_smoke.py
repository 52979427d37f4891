from conftest import Person
from conftest import bearer
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params


def test_gpt_action_flow(base_url, org, gpt):
    person = Person(base_url, org.admin_email)
    params = gpt_params(gpt)
    r = person.authorize(params)
    print(r.headers.get("Location"))
    cb = callback_params(r)
    assert cb["state"] == params["state"]
    response = exchange(base_url, gpt, cb["code"])
    assert response.status_code == 200, response.text
    body = response.json()
    print(body)
    me = __import__("requests").get(f"{base_url}/api/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
