"""Short circuit: the chip opens the discharge FET within microseconds (the firmware could not); the
firmware latches the fault and keeps the FETs open until an explicit reset."""
from scenario_util import board

from firmware.pack import state as S
from firmware.pack.protection import F_SHORT


def test_short_circuit_chip_opens_in_microseconds_firmware_latches_until_reset(plots):
    sb = board("sim16_lfp", soc=0.6)
    plot = plots(sb, "short")
    p = sb.pack
    p.set_profile(lambda t: -5000)
    sb.run_s(5)
    assert sb.fets() == (True, True)
    q0 = [p.charge_in_mas[i] for i in range(16)]
    sb.faults.short_circuit(current_ma=2000000)          # 2000 A hard short on the terminals
    sb.chip.update()
    dsg_open_after_us = None
    # Step the emulated chip in 10 us of simulated time, without the firmware, to time the chip alone.
    for k in range(1, 200):
        sb.clock.advance_us(10)
        if not sb.chip.now_fets()[1]:
            dsg_open_after_us = 10 * k
            break
    assert dsg_open_after_us is not None and dsg_open_after_us <= 500
    drawn_mas = max(q0[i] - p.charge_in_mas[i] for i in range(16))
    assert drawn_mas < 2000000 * 0.001                   # the short lasted well under 1 ms
    sb.run_s(1)
    assert sb.app.prot.faults & F_SHORT and sb.app.sm.state == S.FAULT
    # The short goes away; the chip recovers by itself, the firmware does not.
    sb.faults.clear_short_circuit()
    sb.run_s(120)
    assert sb.app.prot.faults & F_SHORT and sb.fets() == (False, False)
    assert abs(p.current_ma) < 1
    # Explicit reset: FETs close again, the load draws current.
    cleared = sb.app.reset_faults()
    assert cleared & F_SHORT
    sb.run_s(5)
    assert sb.app.prot.faults == 0 and sb.fets() == (True, True)
    assert p.current_ma < -4000
    plot.title = "short circuit: DSG open after %d us; reset" % dsg_open_after_us
    print("short: chip opened DSG after <= %d us, %.0f mAs drawn" % (dsg_open_after_us, drawn_mas))
