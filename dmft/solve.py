"""DMFT solver (issue 5): placeholder until it lands."""


def solve(model, **kwargs):
    raise NotImplementedError("dmft.solve is being written")
