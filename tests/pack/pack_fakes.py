"""Small fakes of the AFE driver interface for unit tests of the pack logic (no bus, no emulator)."""
from firmware.sample import Sample


class FakeAFE:
    """Records commands; read() copies `self.now` (a Sample the test edits) into the caller's sample."""

    def __init__(self, cells=16, temps=3, cell_mv=3300, temp_dc=250):
        self.now = Sample(cells, temps)
        for i in range(cells):
            self.now.cell_mv[i] = cell_mv
        for i in range(temps):
            self.now.temp_dc[i] = temp_dc
        self.now.int_temp_dc = 300
        self.fets = None            # (chg, dsg) last commanded
        self.fet_calls = 0
        self.balance = 0
        self.balance_calls = 0
        self.sleep_allowed = None
        self.fail = False           # True: every call raises OSError (bus dead)
        self.clock_ms = None        # callable giving t_ms for reads

    def _check(self):
        if self.fail:
            raise OSError(116, "ETIMEDOUT")

    def probe(self):
        self._check()
        return True

    def configure(self, settings):
        self._check()
        self.settings = dict(settings)
        return dict(settings)

    def fet_enable(self):
        self._check()

    def read(self, s):
        self._check()
        t = s.t_ms
        s.copy_from(self.now)
        s.t_ms = self.clock_ms() if self.clock_ms else t
        s.balance_mask = self.balance

    def set_fets(self, chg_on, dsg_on):
        self._check()
        self.fets = (int(bool(chg_on)), int(bool(dsg_on)))
        self.fet_calls += 1

    def set_balancing(self, mask):
        self._check()
        self.balance = mask
        self.balance_calls += 1
        return mask

    def set_sleep_allowed(self, allowed):
        self._check()
        self.sleep_allowed = bool(allowed)

    def read_alarms(self):
        self._check()
        return 0

    def clear_alarms(self, mask):
        self._check()

    def recover(self, kind):
        self._check()
