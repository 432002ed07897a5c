"""network.WLAN stand-in: connect returns at once, the link comes up in simulated time; SIM steers it."""
import machine
import network
import pytest

SSID, KEY = "plant-wifi", "secret"


@pytest.fixture
def wlan(sim_clock):
    network.SIM.set_network(SSID, KEY)
    network.SIM.connect_delay_ms = 2000
    w = network.WLAN(network.STA_IF)
    w.active(True)
    return w


def test_status_constants_have_the_esp32_values():
    assert (network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_GOT_IP) == (1000, 1001, 1010)
    assert (network.STAT_BEACON_TIMEOUT, network.STAT_NO_AP_FOUND, network.STAT_WRONG_PASSWORD,
            network.STAT_ASSOC_FAIL, network.STAT_HANDSHAKE_TIMEOUT) == (200, 201, 202, 203, 204)
    assert (network.STA_IF, network.AP_IF) == (0, 1)


def test_connect_returns_at_once_and_the_link_comes_up_after_the_delay(wlan, sim_clock):
    assert wlan.status() == network.STAT_IDLE
    wlan.connect(SSID, KEY)
    assert wlan.status() == network.STAT_CONNECTING and not wlan.isconnected()
    assert wlan.ifconfig()[0] == "0.0.0.0"
    sim_clock.advance_ms(1999)
    assert not wlan.isconnected()
    sim_clock.advance_ms(1)
    assert wlan.isconnected() and wlan.status() == network.STAT_GOT_IP
    assert wlan.ifconfig() == network.SIM.ip and wlan.config("ssid") == SSID
    assert wlan.status("rssi") == network.SIM.rssi


def test_wrong_key_and_unknown_ssid_fail_with_their_status(wlan, sim_clock):
    wlan.connect(SSID, "wrong")
    sim_clock.advance_ms(2000)
    assert wlan.status() == network.STAT_WRONG_PASSWORD and not wlan.isconnected()
    wlan.connect("other-net", KEY)
    sim_clock.advance_ms(2000)
    assert wlan.status() == network.STAT_NO_AP_FOUND


def test_fail_next_connect_then_the_following_attempt_succeeds(wlan, sim_clock):
    network.SIM.fail_next_connect(network.STAT_HANDSHAKE_TIMEOUT)
    wlan.connect(SSID, KEY)
    sim_clock.advance_ms(2000)
    assert wlan.status() == network.STAT_HANDSHAKE_TIMEOUT
    wlan.connect(SSID, KEY)
    sim_clock.advance_ms(2000)
    assert wlan.isconnected()
    with pytest.raises(ValueError):
        network.SIM.fail_next_connect(network.STAT_GOT_IP)


def test_link_drop_and_ap_down(wlan, sim_clock):
    wlan.connect(SSID, KEY)
    sim_clock.advance_ms(2000)
    network.SIM.drop()
    assert not wlan.isconnected() and wlan.status() == network.STAT_BEACON_TIMEOUT
    assert network.SIM.drops == 1 and not network.SIM.link_ok()
    network.SIM.set_ap(False)
    wlan.connect(SSID, KEY)      # nothing reconnects by itself; the firmware asks again
    sim_clock.advance_ms(5000)
    assert wlan.status() == network.STAT_NO_AP_FOUND
    network.SIM.set_ap(True)
    wlan.connect(SSID, KEY)
    sim_clock.advance_ms(2000)
    assert wlan.isconnected()
    network.SIM.set_ap(False)    # AP vanishes under a live link
    assert wlan.status() == network.STAT_BEACON_TIMEOUT and network.SIM.drops == 2


def test_auto_reconnect_when_configured(wlan, sim_clock):
    wlan.config(reconnects=-1)
    wlan.connect(SSID, KEY)
    sim_clock.advance_ms(2000)
    network.SIM.drop()
    assert wlan.status() == network.STAT_CONNECTING
    sim_clock.advance_ms(2000)
    assert wlan.isconnected()


def test_disconnect_and_deactivate(wlan, sim_clock):
    wlan.connect(SSID, KEY)
    sim_clock.advance_ms(2000)
    wlan.disconnect()
    assert wlan.status() == network.STAT_IDLE and not wlan.isconnected()
    wlan.active(False)
    assert not wlan.active()
    with pytest.raises(OSError):
        wlan.connect(SSID, KEY)   # "Wifi Not Started"


def test_mac_is_the_unique_id_and_the_ap_mac_is_one_more():
    machine.sim_set_unique_id(b"\x24\x0a\xc4\x01\x02\xff")
    assert network.WLAN(network.STA_IF).config("mac") == b"\x24\x0a\xc4\x01\x02\xff"
    assert network.WLAN(network.AP_IF).config("mac") == b"\x24\x0a\xc4\x01\x02\x00"
    with pytest.raises(ValueError):
        network.WLAN(network.STA_IF).config("no-such-param")
