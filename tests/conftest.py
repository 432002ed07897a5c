"""Root pytest plugin: the host port for every test, simulated time, and a real mosquitto.

    def test_x(sim_clock, mosquitto):     # sim_clock: simclock.CLOCK in simulated mode
        sim_clock.advance_ms(100); MQTTClient("c", mosquitto.host, mosquitto.port).connect(timeout=5)

- The host port is installed once (tools/hostport/install.py): MicroPython's ticks_*/sleep_ms/
  sleep_us on CPython's `time`, bound to simclock.CLOCK. pyproject puts tools/hostport on sys.path,
  so `import machine, network, micropython` and `from umqtt.simple import MQTTClient` just work.
- Before every test the stand-ins go back to a fresh power-on (real clock, no I2C targets, default
  Wi-Fi, empty scheduler), so nothing leaks between tests.
- Tests using `mosquitto`/`mosquitto_factory` get the `servers` marker automatically.
"""
import pytest

from tools.hostport.install import install, reset_state
from tools.testservers.mosquitto import Mosquitto

CLOCK = install()


@pytest.fixture(autouse=True)
def _hostport_fresh_board():
    reset_state()
    yield
    reset_state()


@pytest.fixture
def sim_clock():
    """simclock.CLOCK switched to simulated time for this test (continuing from now, so time never
    goes backwards for what the fresh board recorded) from the next whole millisecond, so ms and
    us ticks stay aligned; back to real time afterwards."""
    CLOCK.simulate(start_ms=CLOCK.now_ms() + 1)
    try:
        yield CLOCK
    finally:
        CLOCK.real()


@pytest.fixture
def sim():
    """simclock.CLOCK in simulated time (from where it stands); back to real time afterwards unless it
    was simulated already (the emulator, pack and balancing tests)."""
    was = CLOCK.simulated
    CLOCK.simulate()
    yield CLOCK
    if not was:
        CLOCK.real()


def _print_logs(brokers):
    # Shown by pytest only when the test failed ("Captured stdout teardown").
    for b in brokers:
        print("---- %r log (%s) ----" % (b, b.log_path))
        print(b.log_tail(60))


@pytest.fixture
def mosquitto_factory(tmp_path):
    """make(**kwargs) -> a started Mosquitto (see tools/testservers/mosquitto.py); all stopped at the end."""
    brokers = []

    def make(**kwargs):
        b = Mosquitto(tmp_path / ("mosquitto%d" % len(brokers)), **kwargs)
        brokers.append(b)
        return b.start()

    yield make
    _print_logs(brokers)
    for b in brokers:
        try:
            b.stop()
        finally:
            b.kill()  # no-op after a clean stop; makes sure nothing outlives the test


@pytest.fixture
def mosquitto(mosquitto_factory):
    """An anonymous mosquitto on a free loopback port."""
    return mosquitto_factory()


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "mosquitto" in names or "mosquitto_factory" in names:
            item.add_marker(pytest.mark.servers)
