"""Discharge over-current, two lines: between the firmware's limit and the chip's OCD1 the firmware
opens the discharge FET after its 2 s delay; above OCD1 the chip opens it within its 0.4 s delay."""
from scenario_util import board, first_time

from firmware.pack.protection import F_DSG_OC


def _trip_after(load_ma, plots, name):
    sb = board("sim16_lfp", soc=0.8, record_every=1)
    plots(sb, name, "discharge over-current %d A" % (load_ma // 1000))
    p = sb.pack
    p.set_profile(lambda t: -5000)
    sb.run_s(5)
    t0 = sb.now_s()
    p.set_profile(lambda t: -load_ma)
    sb.run_s(5)
    tr = sb.trace
    off = first_time(tr, lambda j: tr.t_s[j] > t0 and not tr.dsg_on[j])
    return sb, t0, off


def test_moderate_over_current_firmware_acts_first_and_gently(plots):
    sb, t0, off = _trip_after(110000, plots, "overcurrent_110a")           # 110 A: above dsg_oc_ma 100 A, below the chip's 124 A
    cfg = sb.cfg
    assert off is not None
    assert cfg["dsg_oc_delay_ms"] / 1000 - 0.3 <= off - t0 <= cfg["dsg_oc_delay_ms"] / 1000 + 0.3
    assert sb.app.prot.faults & F_DSG_OC and sb.fets() == (True, False)   # charge still allowed
    print("over-current 110 A: DSG open %.2f s after the step (firmware)" % (off - t0))


def test_heavy_over_current_chip_acts_within_its_delay(plots):
    sb, t0, off = _trip_after(150000, plots, "overcurrent_150a")           # 150 A: above the chip's OCD1 (124 A applied)
    assert sb.app.applied["ocd1_ma"] < 150000
    assert off is not None and off - t0 <= sb.app.applied["ocd1_delay_ms"] / 1000 + 0.25
    assert off - t0 < sb.cfg["dsg_oc_delay_ms"] / 1000 - 1      # far sooner than the firmware could
    assert sb.app.prot.faults & F_DSG_OC        # mirrored from the chip's Safety Status at once
    print("over-current 150 A: DSG open %.2f s after the step (chip OCD1)" % (off - t0))
