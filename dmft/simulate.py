"""Finite-d multi-pass simulators (issue 4): placeholder until it lands."""


def simulate(model, **kwargs):
    raise NotImplementedError("dmft.simulate is being written")
