"""A small seeded pseudo-random generator that gives the same sequence in CPython and MicroPython.

Used for cell spreads, shunt noise and probabilistic faults, so a seed reproduces a run exactly.

    from tools.emulator.rng import Rng
    r = Rng(7); r.uniform(); r.gauss(0.0, 2.0)
"""


class Rng:
    """xorshift32 (Marsaglia 2003): tiny, deterministic, good enough for test noise."""

    def __init__(self, seed=1):
        s = (int(seed) * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
        self._s = s or 0x12345678
        for _ in range(4):
            self.next_u32()

    def next_u32(self):
        x = self._s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._s = x
        return x

    def uniform(self):
        """Float in [0, 1)."""
        return self.next_u32() / 4294967296.0

    def gauss(self, mean, sigma):
        """Approximately normal (sum of 4 uniforms, variance scaled to 1): cheap and bounded at +-3.46 sigma."""
        s = self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0
        return mean + sigma * s * 1.7320508075688772

    def noise(self, sigma):
        """Cheap zero-mean noise with standard deviation sigma (triangular: sum of two uniforms)."""
        return (self.uniform() + self.uniform() - 1.0) * sigma * 2.449489742783178
