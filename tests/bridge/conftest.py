"""Fixtures of the bridge tests: real InfluxDB 1.x and VictoriaMetrics servers, and frame helpers.

The mosquitto fixtures (`mosquitto`, `mosquitto_factory`) live in tests/conftest.py.
"""
import pytest

from tools.testservers.influxdb import InfluxDB1, VictoriaMetrics


@pytest.fixture(autouse=True)
def _no_bridge_outlives_its_test():
    """A failed test must not leave its bridge subprocess running."""
    from tests.bridge import harness
    yield
    while harness.STARTED:
        br = harness.STARTED.pop()
        if br.alive:
            br.proc.kill()
            br.proc.wait(10)


@pytest.fixture
def influxdb1(tmp_path):
    db = InfluxDB1(tmp_path)
    db.start()
    db.create_database("bms")
    yield db
    db.kill()


@pytest.fixture
def victoria(tmp_path):
    vm = VictoriaMetrics(tmp_path)
    vm.start()
    yield vm
    vm.kill()


DEVICE_PASSWORDS = {"bms-0001": "pw-0001", "bms-0002": "pw-0002", "bms-0003": "pw-0003"}


@pytest.fixture
def broker(mosquitto_factory):
    """Real mosquitto with password auth, the ACL (devices only under bms/<own id>/, the bridge
    user reads bms/+/up/#) and persistence (sessions and queued messages survive a restart), from the
    shared fixture in tests/conftest.py."""
    from tests.bridge.harness import BRIDGE_PW, BRIDGE_USER
    users = dict(DEVICE_PASSWORDS)
    users[BRIDGE_USER] = BRIDGE_PW
    return mosquitto_factory(users=users, acl=True, persistence=True, bridge_users=(BRIDGE_USER,))
