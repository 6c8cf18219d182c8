"""Traffic changes and failures while real requests flow: what a tenant sees."""

from __future__ import annotations

import time

import requests

from tests.local.upstream import upstreams
from tests.reliability.conftest import ADMIN_TOKEN, Answer, World


def _failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200]


def test_shifting_traffic_from_blue_to_green_fails_no_request(world: World) -> None:
    world.deploy("contoso", "blue")
    world.deploy("contoso", "green")
    world.port.set_traffic("contoso", {"blue": 100, "green": 0}, {})
    load = world.load("contoso")
    load.wait_for(50)
    for step in ({"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"blue": 0, "green": 100}):
        world.port.set_traffic("contoso", step, {})
        load.wait_for(100)
    # Blue is drained and deleted while requests keep coming: in-flight ones finish first.
    world.port.delete_deployment("contoso", "blue")
    load.wait_for(100)
    answers = load.stop()
    assert _failed(answers) == []
    served = {a.deployment for a in answers}
    assert served == {"blue", "green"}
    assert world.port.deployment_status("contoso", "blue")[0] == "missing"


def test_rolling_back_a_failing_green_fails_only_greens_requests(world: World) -> None:
    world.deploy("contoso", "blue")
    endpoint = world.port.endpoint_name("contoso")
    with upstreams("green") as servers:
        servers["green"].mode = "fail"  # every answer a 500: a model that cannot score
        requests.put(  # a deployment someone else runs, registered by its URL
            f"{world.server.url}/admin/endpoints/{endpoint}/deployments/green",
            json={"url": servers["green"].url},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        ).raise_for_status()
        world.port.set_traffic("contoso", {"blue": 100, "green": 0}, {})
        load = world.load("contoso")
        load.wait_for(50)
        world.port.set_traffic("contoso", {"blue": 80, "green": 20}, {})
        load.wait_for(150)
        world.port.set_traffic("contoso", {"blue": 100, "green": 0}, {})  # one update
        rolled_back_at = time.monotonic()
        load.wait_for(150)
        answers = load.stop()
    failed = _failed(answers)
    assert failed, "green got no traffic: the test proved nothing"
    # Every failure is green's own (424, its name on the answer); blue never failed, and
    # nothing sent after the rollback reached green.
    assert {(a.status, a.deployment) for a in failed} == {(424, "green")}
    after = [a for a in answers if a.started > rolled_back_at]
    assert len(after) >= 100 and {(a.status, a.deployment) for a in after} == {(200, "blue")}


def test_a_killed_deployment_fails_only_its_own_requests_and_is_reported(world: World) -> None:
    world.deploy("contoso", "blue")
    world.deploy("adatum", "blue")
    for tenant in ("contoso", "adatum"):
        world.port.set_traffic(tenant, {"blue": 100}, {})
    contoso, adatum = world.load("contoso", threads=2), world.load("adatum", threads=2)
    contoso.wait_for(30)
    adatum.wait_for(30)
    running = world.manager.get(world.port.endpoint_name("contoso"), "blue")
    assert running is not None and running.server is not None
    running.server.kill()  # the model's process dies mid-load
    running.server.process.wait()
    killed_at = time.monotonic()
    contoso.wait_for(50)
    adatum.wait_for(200)
    contoso_answers, adatum_answers = contoso.stop(), adatum.stop()
    assert _failed(adatum_answers) == []  # the other tenant never noticed
    after = [a for a in contoso_answers if a.started > killed_at]
    assert after and {a.status for a in after} == {424}
    assert all("model_failed" in a.body for a in after)
    # The automation reads the deployment through its port: it is reported failed, and its
    # metrics (what the rollout analysis reads) count the failures against it.
    status, message = world.port.deployment_status("contoso", "blue")
    assert status == "failed" and "exited" in message
    stats = world.admin.stats(world.port.endpoint_name("contoso"), "blue", 0, 4e9)
    assert stats["errors"] >= len(after)
    assert world.port.deployment_status("adatum", "blue")[0] == "ready"
