"""Standard normals on a refined Brownian path, shared by the simulators' step checks."""
import math


class BridgeNormals:
    """The standard normals of a run whose every step is split in two halves, on the Brownian path
    of the run that draws from ``rng``: each of its draws ``u`` becomes ``(u + v) / sqrt(2)`` and then
    ``(u - v) / sqrt(2)`` (``v`` fresh from ``fresh``), so ``sqrt(tau/2)`` times their sum is the
    undivided step's ``sqrt(tau) u``, and they are independent standard normals."""

    def __init__(self, rng, fresh):
        self.rng, self.fresh, self.second = rng, fresh, None

    def standard_normal(self, size):
        if self.second is not None:
            out, self.second = self.second, None
            return out
        u, v = self.rng.standard_normal(size), self.fresh.standard_normal(size)
        self.second = (u - v) / math.sqrt(2)
        return (u + v) / math.sqrt(2)
