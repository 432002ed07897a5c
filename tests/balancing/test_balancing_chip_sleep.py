"""The emulator's [U] model of host balancing and the chip's SLEEP (reference section 5 does not say
whether Balancing Configuration's CB_SLEEP / CB_NOSLEEP cover CB_ACTIVE_CELLS):

- option cb_host_in_sleep="cb_sleep" (default): host balancing pauses in SLEEP unless CB_SLEEP;
  "always": it continues regardless;
- option cb_nosleep_blocks=True (default): CB_NOSLEEP keeps the chip out of SLEEP while bleeding.
The firmware does not rely on either reading: it keeps the chip awake while cells bleed.
"""
import pytest
from simclock import CLOCK

from tools.emulator import make_emulated_board
from tools.emulator import registers as R

CB_SLEEP = 0x04
CB_NOSLEEP = 0x08


def chip_at_rest(bal_cfg, **opt):
    b = make_emulated_board(cells=4, chemistry="NMC", capacity_mah=1000, attach=False,
                            profile=lambda t: 0, dm_overrides={"BALANCING_CONFIG": bal_cfg}, **opt)
    chip = b.chip
    chip.mfg |= 1 << R.MS_FET_EN      # FET_ENABLE: SLEEP needs FET control on
    return chip


def run_ms(chip, ms):
    CLOCK.advance_ms(ms)
    chip.update()


def test_host_balancing_pauses_in_sleep_without_cb_sleep(sim):
    chip = chip_at_rest(0)
    run_ms(chip, 200)
    assert chip.sleep
    chip._set_cb_mask(0b10)
    before = chip.cb_time_us[1]
    run_ms(chip, 10000)
    assert chip.sleep and chip.cb_time_us[1] == before     # commanded, but no bleed while asleep


def test_cb_sleep_lets_host_balancing_continue_in_sleep(sim):
    chip = chip_at_rest(CB_SLEEP)
    run_ms(chip, 200)
    assert chip.sleep
    chip._set_cb_mask(0b10)
    before = chip.cb_time_us[1]
    run_ms(chip, 10000)
    assert chip.sleep and chip.cb_time_us[1] - before >= 9900000


def test_option_always_ignores_cb_sleep(sim):
    chip = chip_at_rest(0, cb_host_in_sleep="always")
    run_ms(chip, 200)
    chip._set_cb_mask(0b10)
    before = chip.cb_time_us[1]
    run_ms(chip, 10000)
    assert chip.sleep and chip.cb_time_us[1] - before >= 9900000


def test_cb_nosleep_blocks_sleep_entry_while_bleeding(sim):
    chip = chip_at_rest(CB_NOSLEEP)
    chip._set_cb_mask(0b10)
    run_ms(chip, 30000)
    assert not chip.sleep and chip.cb_time_us[1] >= 29000000
    chip._set_cb_mask(0)                                     # bleeding over: SLEEP allowed again
    run_ms(chip, 1000)
    assert chip.sleep


def test_cb_nosleep_ignored_when_the_option_is_off(sim):
    chip = chip_at_rest(CB_NOSLEEP, cb_nosleep_blocks=False)
    chip._set_cb_mask(0b10)
    run_ms(chip, 1000)
    assert chip.sleep


def test_unknown_option_value_rejected():
    with pytest.raises(ValueError):
        make_emulated_board(cells=4, attach=False, cb_host_in_sleep="maybe")
