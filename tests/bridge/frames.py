"""Real frames for the bridge tests, encoded with the one codec as the firmware would.

    b = Board("bms-0001"); raw = b.telemetry(10)      # 10 samples, next seq
"""
from firmware.comms import frame
from firmware.sample import Sample

KEY = bytes(range(32))
WALL_BASE_S = 830000000          # 2026-04-20 on the 2000-01-01 epoch of the frames


def make_sample(i, cells=16, temps=3):
    s = Sample(cells, temps)
    s.t_ms = 1000 * i
    for c in range(cells):
        s.cell_mv[c] = 3300 + c + (i % 7)
    for t in range(temps):
        s.temp_dc[t] = 250 + t
    s.stack_mv = sum(s.cell_mv)
    s.pack_mv = s.stack_mv - 10
    s.ld_mv = s.stack_mv - 20
    s.current_ma = -1500 + i
    s.int_temp_dc = 301
    s.soc_cpct = 8000 - i
    s.soh_cpct = 9900
    s.state = 2
    s.balance_mask = 0b101
    return s


class Board:
    """Encodes real frames for one device as the firmware would (boot, increasing seq)."""

    def __init__(self, device="bms-0001", key=KEY, boot=1, wall=True, cells=16, temps=3):
        self.device = device
        self.enc = frame.Encoder(device, key, boot)
        self.seq = 0
        self.wall = wall
        self.cells = cells
        self.temps = temps
        self.n = 0          # samples made so far

    def _times(self, t_ms):
        up_s, up_ms = divmod(t_ms, 1000)
        if self.wall:
            return up_s, up_ms, WALL_BASE_S + up_s, up_ms
        return up_s, up_ms, -1, 0

    def telemetry(self, n_samples=10):
        first = self.n
        up_s, up_ms, w_s, w_ms = self._times(1000 * first)
        self.enc.begin_telemetry(self.seq, 1000 * first, up_s, up_ms, self.cells, self.temps, w_s, w_ms)
        for i in range(first, first + n_samples):
            if not self.enc.add_sample(make_sample(i, self.cells, self.temps)):
                raise ValueError("frame full")
        self.n += n_samples
        self.seq += 1
        return bytes(self.enc.finish())

    def status(self, fw="0.1.0"):
        up_s, up_ms, w_s, w_ms = self._times(1000 * self.n)
        b = bytes(self.enc.status(self.seq, 1000 * self.n, up_s, up_ms, fw, "sim", 0xDEADBEEF, 1,
                                  self.cells, self.temps, w_s, w_ms))
        self.seq += 1
        return b

    def events(self, codes):
        up_s, up_ms, w_s, w_ms = self._times(1000 * self.n)
        self.enc.begin_events(self.seq, 1000 * self.n, up_s, up_ms, w_s, w_ms)
        for code in codes:
            self.enc.add_event_values(1000 * self.n, frame.EVENT_RAISED, code, (3650, code))
        self.seq += 1
        return bytes(self.enc.finish())

    def ack(self, counter=5):
        up_s, up_ms, w_s, w_ms = self._times(1000 * self.n)
        b = bytes(self.enc.ack(self.seq, 1000 * self.n, up_s, up_ms, counter, 3, 0, "done", w_s, w_ms))
        self.seq += 1
        return b
