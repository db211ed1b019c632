"""operate.admin_client against respx-mocked admin APIs: each failure is one clear OperatorError
naming the proxy and what to do."""
from __future__ import annotations

import httpx
import pytest
import respx

from operate.admin_client import AdminClient, proxy_urls, read_token
from strangler.errors import OperatorError

URL = "http://127.0.0.1:18081"
STATUS = {"rules": {"version": "abc123def456"}, "capabilities": {"catalog": {"requests": 3}},
          "gates": {"capabilities": {}, "last_autorollback": None}}


@pytest.fixture
def client():
    with AdminClient([URL], "s3cret") as c:
        yield c


@respx.mock
def test_status_sends_the_bearer_token_and_reads_the_version(client):
    route = respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(200, json=STATUS))
    status = client.status(URL)
    assert status.version == "abc123def456"
    assert status.gates == STATUS["gates"]
    assert route.calls.last.request.headers["Authorization"] == "Bearer s3cret"


@respx.mock
def test_connection_refused_says_unreachable_and_how_to_start_it(client):
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    respx.get(f"{URL}/admin/status").mock(side_effect=refused)
    with pytest.raises(OperatorError) as exc:
        client.status(URL)
    assert str(exc.value).startswith(f"proxy at {URL} is unreachable (connection refused)")
    assert "strangler proxy" in str(exc.value) and "--proxy" in str(exc.value)


@respx.mock
def test_timeout_says_unreachable(client):
    respx.get(f"{URL}/admin/status").mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(OperatorError, match=rf"proxy at {URL} is unreachable \(timed out"):
        client.status(URL)


@respx.mock
def test_a_refused_token_says_which_proxy_and_what_to_pass(client):
    respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(401, text="no"))
    with pytest.raises(OperatorError) as exc:
        client.status(URL)
    assert str(exc.value) == (f"the admin token was refused by {URL}; pass --token-file with "
                              "the proxy's token (or set STRANGLER_ADMIN_TOKEN)")


@respx.mock
def test_a_port_without_the_admin_api_is_named(client):
    respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(404, text="no"))
    respx.get(f"{URL}/admin/shadow").mock(return_value=httpx.Response(404, text="no"))
    with pytest.raises(OperatorError) as exc:
        client.status(URL)
    assert str(exc.value) == (f"proxy at {URL} has no /admin/status (404); is that its admin "
                              "port (not the one clients use)?")
    with pytest.raises(OperatorError, match=r"\(not the one clients use\) and is shadowing on "
                                            r"there \(not --no-shadow\)\?$"):
        client.shadow(URL, "catalog")


@respx.mock
def test_an_answer_that_is_not_json_names_the_proxy(client):
    respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(200, text="<html>hi"))
    with pytest.raises(OperatorError, match=f"proxy at {URL} answered /admin/status with "
                                            "something that is not JSON"):
        client.status(URL)


@respx.mock
def test_json_without_the_expected_fields_names_the_proxy(client):
    respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(200, json={"ok": True}))
    with pytest.raises(OperatorError, match=f"proxy at {URL} answered /admin/status without "
                                            "rules.version"):
        client.status(URL)


@respx.mock
def test_a_server_error_is_reported_with_its_first_line(client):
    respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(500, text="boom\nmore"))
    with pytest.raises(OperatorError, match="HTTP 500: boom; check its log"):
        client.status(URL)


@respx.mock
def test_shadow_report_is_asked_for_one_capability_as_json(client):
    route = respx.get(f"{URL}/admin/shadow").mock(
        return_value=httpx.Response(200, json={"capabilities": []}))
    assert client.shadow(URL, "catalog", since="5m") == {"capabilities": []}
    assert dict(route.calls.last.request.url.params) == {"capability": "catalog",
                                                         "format": "json", "since": "5m"}


def test_proxy_urls_from_flags_or_environment(monkeypatch):
    monkeypatch.setenv("STRANGLER_PROXIES", "127.0.0.1:1, http://127.0.0.1:2/")
    assert proxy_urls(None) == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert proxy_urls(["http://h:3"]) == ["http://h:3"]
    monkeypatch.delenv("STRANGLER_PROXIES")
    assert proxy_urls(None) == []


def test_token_from_file_environment_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("STRANGLER_ADMIN_TOKEN", raising=False)
    (tmp_path / "t").write_text("abc\n")
    assert read_token(tmp_path / "t") == "abc"
    monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", "env-token")
    assert read_token(None) == "env-token"
    with pytest.raises(OperatorError, match="cannot read the admin token from .*missing"):
        read_token(tmp_path / "missing")
    (tmp_path / "empty").write_text("")
    with pytest.raises(OperatorError, match="is empty"):
        read_token(tmp_path / "empty")


@respx.mock
def test_promote_waits_until_each_proxy_has_judged_the_new_rules(client, tmp_path):
    """Right after a step a proxy serves the new rules, yet its gate figures are the old
    step's until its gate watch ticks: promote must wait, not judge the new step on them."""
    from operate.promote import _verdict
    from operate.rule_edit import compile_rules, read_rules
    from tests.operate.live_harness import write_rules
    rules = write_rules(tmp_path / "canary.yaml", 1, 2, percent=10)
    version = read_rules(rules).version
    cap = compile_rules(read_rules(rules)).capability("catalog")
    status = {"rules": {"version": version}, "capabilities": {},
              "gates": {"rules_version": "0123456789ab", "capabilities": {}}}
    respx.get(f"{URL}/admin/status").mock(return_value=httpx.Response(200, json=status))
    verdict = _verdict(version, cap, client)
    assert verdict.state == "wait"
    assert verdict.checks[0].detail == (f"proxy at {URL} has not judged rules {version} yet; "
                                        "waiting for its gate watch")
