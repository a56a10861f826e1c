"""Settings for the SDK conformance tests, from the environment.

`cargo test --test sdk_conformance` starts the simulator and sets these; to
run by hand, start `imagelabel sim` with the same seed and export them.
"""
import json
import os
import urllib.request

import pytest


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set; run these tests through `cargo test --test sdk_conformance`", pytrace=False)
    return value


class Sim:
    """The simulator's admin endpoints, for setup and for checking state
    without going through the SDK under test."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def state(self):
        return self._call("GET", "/_sim/state")

    def counters(self):
        return self._call("GET", "/_sim/counters")

    def set_faults(self, **faults):
        self._call("PUT", "/_sim/faults", faults)

    def set_flow_control(self, **flow_control):
        self._call("PUT", "/_sim/flow-control", flow_control)

    def put(self, path, value):
        self._call("PUT", path, {"value": value})


@pytest.fixture(scope="session")
def sim():
    return Sim(env("IMAGELABEL_SIM_URL"))


@pytest.fixture(autouse=True)
def no_faults(sim):
    """Every test starts without faults and without flow control, as seeded."""
    sim.set_faults()
    sim.set_flow_control(enabled=False)
    yield
    sim.set_faults()
    sim.set_flow_control(enabled=False)
