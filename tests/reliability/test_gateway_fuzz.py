"""The gateway, with a real deployment behind it, fed whatever a caller can send: every answer
is a 4xx that says what is wrong (or a 200 for what happens to be valid), never a 5xx, never
a model failure, and the gateway and the deployment keep serving. Keys are compared in
constant time."""

from __future__ import annotations

import hmac
import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.keys import KeyRing
from tests.reliability.conftest import MAX_PAYLOAD, World

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=1e38, max_value=1e308)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)


def _encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN and Infinity as literals


def _rows(width: int) -> st.SearchStrategy[Any]:
    row = st.lists(SCALARS, min_size=width, max_size=width) | st.lists(SCALARS, max_size=width + 3)
    return st.lists(row, max_size=5)


def _bodies(width: int) -> st.SearchStrategy[bytes]:
    deep = st.integers(min_value=50, max_value=200_000).map(
        lambda n: b'{"data": ' + b"[" * n + b"]" * n + b"}"
    )
    oversized = st.integers(min_value=MAX_PAYLOAD + 1, max_value=4 * MAX_PAYLOAD).map(
        lambda n: b'{"data": [[' + b"1," * (n // 2) + b"1]]}"
    )
    return st.one_of(
        st.binary(max_size=300),
        JSON.map(_encoded),
        st.fixed_dictionaries({"data": JSON}).map(_encoded),
        st.fixed_dictionaries({"data": _rows(width)}).map(_encoded),
        st.fixed_dictionaries(
            {"input_data": st.fixed_dictionaries({"columns": JSON, "data": _rows(width)})}
        ).map(_encoded),
        deep,
        oversized,
    )


def _authorizations(world: World) -> st.SearchStrategy[dict[str, str]]:
    own, other = world.keys["contoso"], world.keys["adatum"]
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
    return st.one_of(
        st.just({"Authorization": f"Bearer {own}"}),
        st.just({"Authorization": f"bearer {own}"}),
        st.just({"Authorization": f"Bearer {other}"}),  # a real key of another tenant
        st.just({"Authorization": own}),  # no scheme
        st.just({}),
        printable.map(lambda text: {"Authorization": f"Bearer {text}"}),
        st.builds(
            lambda key, deployment: {
                "Authorization": f"Bearer {key}",
                "azureml-model-deployment": deployment,
            },
            st.just(own),
            printable.map(str.strip),  # HTTP clients refuse a value opening with a space
        ),
    )


@pytest.fixture
def served(world: World) -> World:
    world.deploy("contoso", "blue")
    world.deploy("adatum", "blue")
    for tenant in ("contoso", "adatum"):
        world.port.set_traffic(tenant, {"blue": 100}, {})
    return world


def test_whatever_a_caller_sends_gets_a_clear_4xx_never_a_5xx(served: World) -> None:
    world = served
    session = requests.Session()
    url = world.url("contoso")
    width = len(world.sample()["data"][0])
    seen: dict[int, int] = {}

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(body=_bodies(width), headers=st.data())
    def check(body: bytes, headers: st.DataObject) -> None:
        chosen = headers.draw(_authorizations(world))
        answer = session.post(
            url, data=body, headers={"Content-Type": "application/json", **chosen}, timeout=30
        )
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code < 500, answer.text[:300]
        # 424 and 408 are the model's failures: bad input must never cause one.
        assert answer.status_code not in (408, 424), answer.text[:300]
        if answer.status_code != 200:
            error = answer.json()["error"]
            assert error["code"] and len(error["message"]) > 10, error

    check()
    assert {400, 401, 413} <= set(seen), seen  # the fuzzing reached every refusal
    # Both processes are still serving, and served nothing but 4xx along the way.
    valid = session.post(
        url,
        json=world.sample(),
        headers={"Authorization": f"Bearer {world.keys['contoso']}"},
        timeout=30,
    )
    assert valid.status_code == 200 and len(valid.json()["predictions"]) == 2
    stats = world.admin.stats(world.port.endpoint_name("contoso"), "blue", 0, 4e9)
    assert stats["errors"] == 0, stats


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stored digest is compared, with hmac.compare_digest, on digests of one length,
    whether the key is the first tenant's, the last's, of another length or unknown: the work
    done does not depend on where (or whether) the key matches."""
    from automation.store import MemoryStore  # noqa: PLC0415

    ring = KeyRing(MemoryStore())
    keys = {tenant: ring.issue(tenant) for tenant in ("a-tenant", "b-tenant", "c-tenant")}
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(left: Any, right: Any) -> bool:
        compared.append((len(left), len(right)))
        return real(left, right)

    monkeypatch.setattr("local.keys.hmac.compare_digest", spy)
    presented = {
        "first": keys["a-tenant"]["primary"],
        "last": keys["c-tenant"]["secondary"],
        "unknown": "x" * len(keys["a-tenant"]["primary"]),
        "short": "x",
        "long": "y" * 4096,
    }
    work = {}
    for name, key in presented.items():
        compared.clear()
        owner = ring.tenant_of(key)
        work[name] = list(compared)
        assert owner == {"first": "a-tenant", "last": "c-tenant"}.get(name)
    assert len({len(calls) for calls in work.values()}) == 1  # same number of comparisons
    assert len(work["first"]) == 6  # three tenants, two slots each
    assert {pair for calls in work.values() for pair in calls} == {(64, 64)}
