"""Data reuse on power-law data: multi-pass SGD and GF for several ``delta`` against one-pass.

Squared loss (label noise ``sigma = 0.5``) on anisotropic teacher-student data:
eigenvalues ``lam_i ∝ (i/d)^1.5`` normalised to ``Tr K/d = 1``, teacher power
``x*_i^2 ∝ (i/d)^-0.5`` (most of it on the small eigenvalues), ``|x*| = 1``
(docs/dmft_anisotropic.md). For ``delta = n/d`` in 0.5, 1, 2, 4, SGD (``lr = 0.5``,
``batch = 1``) and gradient flow run 4 epochs on the same ``n`` samples: the spectral
DMFT (16 bins) against the finite-``d`` simulation on the same data (``d = 1000``).
The horizontal axis is the number of samples processed per dimension, ``steps/d =
delta t`` (one epoch is ``delta`` of them), so that the curves meet the one-pass ODE of
``onepass.solve`` on the same data (SGD with ``gamma = lr``, every sample fresh) where
they have not reused any sample yet, and leave it once they do: fewer samples, earlier
departure, higher plateau. Gradient flow is drawn against its flow time on the population
scale, ``tau = lr delta t``, with population gradient flow (the one-pass ODE at
``gamma = 0.005`` and ``tau = gamma steps/d``) as its reference. Output times are
log-spaced (``dmft.compare(times=...)``).
"""
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import dmft
import onepass
from dmft import data as D, models

try:
    from validation import _common
except ImportError:  # run as a script from validation/
    import _common

LR, EPOCHS, DELTAS = 0.5, 4.0, (0.5, 1.0, 2.0, 4.0)
# epochs (batch 1), log-spaced from 2.5 DMFT steps on: below that the grid's first steps dominate
TIMES = np.geomspace(EPOCHS / 32, EPOCHS, 26)
GF_REFERENCE_LR = 0.005  # one-pass steps this small are gradient flow on the population risk


def power_law(d: int):
    """Eigenvalues ``∝ (i/d)^1.5`` with ``Tr K/d = 1``; teacher ``x*_i^2 ∝ (i/d)^-0.5``."""
    u = np.arange(1, d + 1) / d
    lam = u**1.5 / np.mean(u**1.5)
    xs = u**-0.25
    return D.gaussian_mixture(np.zeros((1, d)), [lam], teacher=(xs / np.linalg.norm(xs))[None], name="power_law")


def one_pass(model, data, n_time: int):
    """SGD's one-pass ODE (``gamma = LR``) against ``steps/d`` up to the largest ``delta t``,
    and population GF (``gamma = GF_REFERENCE_LR``) against ``tau = gamma steps/d`` up to the
    largest ``LR delta t``."""
    horizon = max(DELTAS) * EPOCHS
    sgd = onepass.solve(model, data, lr=LR, t_max=horizon, n_time=n_time, progress=False)
    gf = onepass.solve(model, data, lr=GF_REFERENCE_LR, t_max=horizon * LR / GF_REFERENCE_LR, n_time=n_time,
                       progress=False)
    return sgd.risk, gf.risk.assign_coords(time=gf.time * GF_REFERENCE_LR)


def plot(ds, ref_sgd, ref_gf):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, dyn, ref, scale, xlabel in (
            (axes[0], "sgd", ref_sgd, 1.0, r"samples processed per dimension, steps$/d = \delta t$"),
            (axes[1], "gf", ref_gf, LR, r"population flow time $\tau = \bar\eta\,\delta t$")):
        for j, delta in enumerate(ds.delta.values):
            sel = ds.sel(delta=delta, dynamics=dyn)
            x = scale * delta * sel.time
            th, sim = sel.test_loss.sel(source="theory"), sel.test_loss.sel(source="simulation")
            ax.plot(x, th, color=f"C{j}", label=rf"$\delta = {delta:g}$ (DMFT)")
            ax.errorbar(x, sim, yerr=2 * sel.test_loss_sem.sel(source="simulation"), fmt=".", color=f"C{j}", ms=3,
                        lw=0.6)
        ref = ref.isel(time=slice(1, None))  # t = 0 has no place on a log axis
        ax.plot(ref.time, ref, "k--", lw=1, label=r"one-pass ($\delta \to \infty$)")
        ax.set(xscale="log", yscale="log", xlabel=xlabel)
        ax.set_title("SGD" if dyn == "sgd" else "gradient flow", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(r"test loss $L_{\rm test}$ (dots: simulation $\pm 2$ SE)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"squared loss on power-law data, d = {ds.attrs['d']}, {ds.attrs['n_seeds']} seeds, "
                 f"{EPOCHS:g} epochs", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None):
    args = _common.parse(__doc__, argv)
    t0 = time.perf_counter()
    d, n_seeds, paths = (200, 2, 4096) if args.quick else (1000, 8, 32768)
    model = models.linear_regression(noise_std=0.5)
    data = power_law(d)
    parts, rows = [], []
    for delta in DELTAS:
        ds = dmft.compare(model, data=data, delta=delta, lr=LR, batch=1.0, times=TIMES,
                          dynamics=("sgd", "gf"), n_seeds=n_seeds, n_paths=paths, seed=args.seed,
                          solve_options={"groups": D.Binned(16)}, progress=not args.no_progress)
        for dyn in ds.dynamics.values:
            rows += _common.error_rows(ds, ["test_loss", "train_loss", "norm"], case=f"{dyn}, delta={delta:g}",
                                       select={"dynamics": dyn})
        parts.append(ds.expand_dims(delta=[delta]))
    ds = xr.concat(parts, dim="delta", combine_attrs="drop_conflicts")
    ds.attrs.update(d=d, n_seeds=n_seeds, lr=LR, epochs=EPOCHS)
    ref_sgd, ref_gf = one_pass(model, data, 321)
    ds["onepass_sgd_risk"] = ref_sgd.rename(time="steps_per_d")
    ds["onepass_gf_risk"] = ref_gf.rename(time="steps_per_d_gf")
    return _common.finish("data_reuse", ds, plot(ds, ref_sgd, ref_gf), rows, args, t0,
                          "Data reuse on power-law data: multi-pass DMFT vs simulation")


if __name__ == "__main__":
    main(sys.argv[1:])
