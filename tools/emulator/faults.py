"""Fault injection for the emulated BQ76952 and its pack: bus faults, sensing faults, pack faults.

Each method documents the behaviour chosen where the chip's real response is not verified.

    board = make_emulated_board(cells=16); f = board.faults
    f.nack_next(3); f.stuck_bus(50); f.open_cell_wire(5); f.short_circuit(); f.clear_all()
"""
import errno

from simclock import CLOCK

from tools.emulator.rng import Rng


class Faults:
    def __init__(self, chip, pack, seed=1):
        self.chip = chip
        self.pack = pack
        chip.faults = self
        self._rng = Rng(seed * 104729 + 7)
        self.clear_bus()

    # ------------------------------------------------------------------ bus
    def clear_bus(self):
        self._nack_count = 0
        self._nack_p = 0.0
        self._corrupt_count = 0
        self._corrupt_p = 0.0
        self._corrupt_index = 0
        self._corrupt_xor = 0x01
        self._stuck_until_us = -1
        self._late_us = 0
        self._late_count = 0
        self.counts = {"nack": 0, "corrupt": 0, "stuck": 0, "late": 0}

    def nack_next(self, n=1):
        """The next n transactions NACK the address (i2c_write -> -1, i2c_read -> None)."""
        self._nack_count = int(n)

    def nack_probability(self, p):
        """Each transaction NACKs with probability p (seeded, reproducible)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be 0..1")
        self._nack_p = float(p)

    def corrupt_next_read(self, n=1, index=0, xor=0x01):
        """XOR byte `index` (clamped to the last byte) of the next n reads with `xor`."""
        if xor & 0xFF == 0:
            raise ValueError("xor must change the byte")
        self._corrupt_count = int(n)
        self._corrupt_index = int(index)
        self._corrupt_xor = xor & 0xFF

    def corrupt_probability(self, p, xor=0x01):
        """Each read has one random byte XORed with `xor` with probability p."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be 0..1")
        self._corrupt_p = float(p)
        self._corrupt_xor = xor & 0xFF

    def stuck_bus(self, duration_ms):
        """Every transaction raises OSError(ETIMEDOUT) until duration_ms of CLOCK time has passed
        (SDA/SCL held low; the chip's 2 s SCL-low timeout would release it, so keep it below 2000)."""
        self._stuck_until_us = CLOCK.now_us() + int(duration_ms * 1000)

    def late_subcommand(self, extra_us, n=1):
        """The next n subcommands take extra_us longer to complete (0x3E/0x3F stay busy)."""
        self._late_us = int(extra_us)
        self._late_count = int(n)

    # --- hooks called by the chip ---
    def before_transaction(self):
        if self._stuck_until_us >= 0:
            if CLOCK.now_us() < self._stuck_until_us:
                self.counts["stuck"] += 1
                raise OSError(errno.ETIMEDOUT)
            self._stuck_until_us = -1

    def take_nack(self):
        if self._nack_count > 0:
            self._nack_count -= 1
            self.counts["nack"] += 1
            return True
        if self._nack_p and self._rng.uniform() < self._nack_p:
            self.counts["nack"] += 1
            return True
        return False

    def corrupt_read(self, buf):
        n = len(buf)
        if n == 0:
            return
        if self._corrupt_count > 0:
            self._corrupt_count -= 1
            k = self._corrupt_index if self._corrupt_index < n else n - 1
            buf[k] ^= self._corrupt_xor
            self.counts["corrupt"] += 1
        elif self._corrupt_p and self._rng.uniform() < self._corrupt_p:
            k = int(self._rng.uniform() * n)
            buf[k] ^= self._corrupt_xor
            self.counts["corrupt"] += 1

    def take_late_us(self):
        if self._late_count > 0:
            self._late_count -= 1
            self.counts["late"] += 1
            return self._late_us
        return 0

    # ------------------------------------------------------------------ sensing
    def open_cell_wire(self, vc_input):
        """Open the sense wire of VC input n (1..16). Chosen model: Cell n reads ~0 mV and Cell n+1
        reads the sum of cells n and n+1 (for n = 16 only Cell 16 reads ~0). The chip's real reading
        depends on its input filter and the balancing state; this is the usual first-order picture."""
        if not 1 <= vc_input <= 16:
            raise ValueError("VC input is 1..16")
        self.chip.update()
        self.chip.open_wire |= 1 << (vc_input - 1)

    def close_cell_wire(self, vc_input):
        self.chip.update()
        self.chip.open_wire &= ~(1 << (vc_input - 1))

    def thermistor(self, pin, state):
        """pin: "TS1".."TS3" (or any temperature pin name); state: "open", "short" or None (healthy).
        Open reads the chip's option therm_open_dc (default -40.0 degC), short therm_short_dc (+150.0)."""
        names = ("CFETOFF", "DFETOFF", "ALERT", "TS1", "TS2", "TS3", "HDQ", "DCHG", "DDSG")
        if pin not in names:
            raise ValueError("unknown pin %r" % pin)
        if state not in (None, "open", "short"):
            raise ValueError("state is 'open', 'short' or None")
        self.chip.update()
        self.chip.therm_fault[names.index(pin)] = state

    # ------------------------------------------------------------------ pack
    def short_circuit(self, current_ma=2000000):
        """A hard short on the pack terminals: a discharge of current_ma (default 2000 A) whenever the
        DSG FET conducts. SCD should trip within its delay and open DSG."""
        self.chip.update()
        self.pack.short_ma = float(current_ma)

    def clear_short_circuit(self):
        self.chip.update()
        self.pack.short_ma = 0.0

    def cell_internal_short(self, cell, leak_ma):
        """Self-discharge of pack cell index `cell` (0-based) by leak_ma (an internal soft short)."""
        if not 0 <= cell < self.pack.cells:
            raise ValueError("no such cell")
        self.chip.update()
        self.pack.leak_ma[cell] = float(leak_ma)

    def clear_all(self):
        self.chip.update()
        self.clear_bus()
        self.chip.open_wire = 0
        for k in range(9):
            self.chip.therm_fault[k] = None
        self.pack.short_ma = 0.0
        for i in range(self.pack.cells):
            self.pack.leak_ma[i] = 0.0
