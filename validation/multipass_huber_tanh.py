"""Huber loss on a tanh teacher: SGD, SME and GF are mutually distinct; DMFT vs simulation.

``delta = 2``, ``lr = 2``, ``batch = 1`` (the ``dmft compare`` default), and a larger
batch ``batch = 4`` at which SGD and SME approach GF.
"""
import sys
import time

import matplotlib.pyplot as plt
import xarray as xr

import dmft
from dmft import plotting

try:
    from validation import _common
except ImportError:
    import _common


def plot(ds):
    """Test and training loss, one row per batch."""
    fig, axes = plt.subplots(ds.sizes["batch"], 2, figsize=(9, 3.4 * ds.sizes["batch"]), squeeze=False)
    for b, ax in zip(ds.batch.values, axes):
        plotting.compare(ds.sel(batch=b), ["test_loss", "train_loss"], ax=ax)
        ax[0].set_title(f"batch = {b:g}", fontsize=9)
    fig.suptitle(f"{ds.attrs['model']}, delta = {ds.attrs['delta']}, lr = {ds.attrs['lr']}, d = {ds.attrs['d']}, "
                 f"{ds.attrs['n_seeds']} seeds", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    size = (dict(t_max=2.0, n_time=21, d=200, n_seeds=4, n_paths=1024) if args.quick else
            dict(t_max=4.0, n_time=41, d=1000, n_seeds=16, n_paths=16384))
    batches = [1.0] if args.quick else [1.0, 4.0]
    parts, rows = [], []
    for batch in batches:
        ds = dmft.compare("huber-tanh", delta=2.0, lr=2.0, batch=batch, dynamics=("sgd", "sme", "gf"),
                          seed=args.seed, progress=not args.no_progress, **size)
        parts.append(ds)
        for dyn in ds.dynamics.values:
            rows += _common.error_rows(ds, ["test_loss", "train_loss"], case=f"{dyn}, batch {batch:g}",
                                       select={"dynamics": dyn})
    attrs = parts[0].attrs
    ds = xr.concat(parts, dim=xr.Variable("batch", batches), combine_attrs="override")
    ds.attrs = {k: v for k, v in attrs.items() if k != "batch"}
    fig = plot(ds)
    return _common.finish("multipass_huber_tanh", ds, fig, rows, args, t0,
                          "Huber on tanh: SGD vs SME vs GF, DMFT vs simulation")


if __name__ == "__main__":
    main(sys.argv[1:])
