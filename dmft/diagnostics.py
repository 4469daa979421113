"""Diagnostics: is a result converged, accurate and sane?

* :func:`convergence_check` reruns :func:`dmft.solve` with doubled ``n_paths``, halved
  ``dt`` or (models with kinks) doubled ``kink_bandwidth`` and reports each observable's
  change against its Monte Carlo standard error.
* :func:`quadrature_error` estimates the error of the Gaussian expectation engine
  (:func:`dmft.expectation.gaussian_moments`) by comparing a rule with a refined one
  (or with the model's closed form).
* :func:`sanity_check` checks simulator and solver outputs: finite, non-negative losses,
  positive semi-definite ``norm``, and for gradient flow an energy that never increases.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from . import errors, expectation, models

__all__ = ["convergence_check", "quadrature_error", "sanity_check"]


# ---------------------------------------------------------------- DMFT convergence
def convergence_check(model, *, variables=("test_loss", "train_loss", "norm", "overlap"),
                      refine=("n_paths", "dt"), solve=None, **solve_kwargs) -> xr.Dataset:
    """Rerun the DMFT solve with ``2 n_paths``, with ``dt / 2`` and (on request) with
    ``2 kink_bandwidth``; compare with the base run.

    Parameters
    ----------
    model, **solve_kwargs
        Passed to ``solve`` (default :func:`dmft.solve`); the base run uses them as given.
    variables : observables to compare (each needs a ``*_sem`` in the solver output).
    refine : subset of ``('n_paths', 'dt', 'kink_bandwidth')``. ``'kink_bandwidth'`` needs a
        solve that smooths kinks (a model whose ``l'`` jumps, ``kink_bandwidth > 0``): the
        rerun's curve is extrapolated from the widths ``2h, 4h`` where the base's is from
        ``h, 2h``. If the extrapolation's residual were ``b h^2``, ``-difference / 3`` would be
        the base's; on ``relu(1)`` SME (``delta = 2``, ``lr = 0.5``, ``init_std = 1``, ``t = 4``) the
        overlap's extrapolations from ``h = 0.1, 0.2, 0.4`` differ by 0.017 and 0.042 (ratio
        2.4, not 4), so read ``z`` as the curve's sensitivity to the smoothing, not as a
        correction (docs/dmft_theory.md, "Kinks").
    solve : callable with the signature of :func:`dmft.solve` (for tests and wrappers).

    Returns
    -------
    xarray.Dataset
        On dims ``(refinement, time, ...)``: ``<var>`` (base run), ``<var>_difference``
        (refined minus base), ``<var>_sem`` (combined standard error of the difference,
        ``sqrt(sem_base^2 + sem_refined^2)``), ``<var>_z`` (difference / sem). ``attrs``:
        ``max_abs_z`` per refinement, the base ``n_paths`` and ``dt`` and each refined value.
        ``|z| >> 3`` under ``n_paths`` doubling means a path-count bias (e.g. the
        Monte Carlo bias of ``Gamma``, docs/dmft_theory.md, section 6); under ``dt`` halving a
        discretisation error larger than the noise; under ``kink_bandwidth`` doubling a
        smoothing bias larger than the noise.
    """
    if solve is None:
        from . import solve  # the package's public function: the core imports no method module
    refine = tuple(refine)
    for r in refine:
        errors.choice("refine", r, ("n_paths", "dt", "kink_bandwidth"))
    if not refine:
        raise errors.ParameterError("refine=() is not allowed: refine must name 'n_paths', 'dt' and/or "
                                    "'kink_bandwidth'")
    kw = dict(solve_kwargs)
    kw.setdefault("progress", False)
    width = kw.get("kink_bandwidth")  # None: the solver's default, which smooths
    if "kink_bandwidth" in refine and ((width is not None and width <= 0) or not np.any(
            models.get(model).gradient_jumps() > models.GRADIENT_JUMP_TOL)):
        raise errors.ParameterError(
            "refine=('kink_bandwidth',) is not allowed here: the solve smooths no kink (the model's l' does not "
            f"jump, or kink_bandwidth={width!r}); allowed for models whose l' jumps, with "
            "kink_bandwidth > 0")
    base = solve(model, **kw)
    for v in variables:
        if v not in base or v + "_sem" not in base:
            raise errors.ParameterError(
                f"variables={tuple(variables)!r} is not allowed: {v!r} (with {v}_sem) is not in the solver output")
    runs = {}
    for r in refine:
        k2 = dict(kw)
        if r == "n_paths":
            k2["n_paths"] = 2 * int(base.attrs["n_paths"])
        elif r == "dt":
            k2["dt"] = 0.5 * float(base.attrs["dt"])
        else:
            k2["kink_bandwidth"] = 2 * float(base.attrs["kink_bandwidth"])
        runs[r] = solve(model, **k2)
    out = {}
    for v in variables:
        b = base[v]
        diffs, sems = [], []
        for r in refine:
            ref = runs[r]
            diffs.append(ref[v].values - b.values)
            sems.append(np.sqrt(base[v + "_sem"].values ** 2 + ref[v + "_sem"].values ** 2))
        dims = ("refinement",) + b.dims
        d = np.stack(diffs)
        s = np.stack(sems)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(s > 0, d / s, np.where(d == 0, 0.0, np.inf))
        out[v] = (b.dims, b.values, dict(b.attrs))
        out[v + "_difference"] = (dims, d, {"long_name": f"refined minus base: {b.attrs.get('long_name', v)}"})
        out[v + "_sem"] = (dims, s, {"long_name": f"standard error of the difference of {v}"})
        out[v + "_z"] = (dims, z, {"long_name": f"difference of {v} in standard errors", "units": "1"})
    coords = {c: base.coords[c] for c in base.coords}
    ds = xr.Dataset(out, coords={**coords, "refinement": list(refine)})
    attrs = {"diagnostic": "dmft.diagnostics.convergence_check", "base_n_paths": int(base.attrs["n_paths"]),
             "base_dt": float(base.attrs["dt"])}
    for r in refine:
        attrs[f"{r}_refined"] = float(runs[r].attrs[r])
        zs = [np.nanmax(np.abs(ds[v + "_z"].sel(refinement=r).values)) for v in variables]
        attrs[f"max_abs_z_{r}"] = float(max(zs))
    ds.attrs.update(attrs)
    return ds


# ---------------------------------------------------------------- quadrature error
def quadrature_error(model, mean, cov, *, label=None, rule=None, reference=None) -> dict:
    """Error estimate of :func:`dmft.expectation.gaussian_moments` with ``rule``.

    ``rule`` defaults to the engine's default quadrature rule for this integration
    dimension (Gauss-Hermite up to 5 dims, quasi-Monte Carlo above); the reference
    defaults to the model's closed form when it has one (then the estimate is the exact
    error), else the refined rule (``rule.refined()``: Gauss-Hermite with 1.5x the points
    per coordinate and per piece, or quasi-Monte Carlo with 4x the points and another
    scrambling seed).

    Returns ``{'loss', 'grad', 'hess', 'hess_star', 'fisher'}`` -> largest absolute
    difference, ``'max'`` -> the largest of them, and ``'rule'``/``'reference'`` (reprs).
    """
    mean = errors.finite_array("mean", mean)
    cov = errors.finite_array("cov", cov)
    dim = mean.shape[0] + (0 if label is not None else model.noise_dim)
    if rule is None:
        rule = expectation.default_rule(dim, model.smooth,
                                        len(expectation._planes(model, mean.shape[0], label is not None)))
    got = expectation.gaussian_moments(model, mean, cov, label=label, rule=rule)
    exact = None
    if reference is None and model.closed_form is not None:
        exact = model.closed_form(mean, cov, label, model.param_array)
    if exact is not None:
        ref = exact
        ref_name = "closed form"
    else:
        reference = reference or rule.refined()
        ref = expectation.gaussian_moments(model, mean, cov, label=label, rule=reference)
        ref_name = repr(reference)
    out = {}
    fields = got._fields[:-1]  # not the error estimate
    for name in fields:
        a, b = np.asarray(getattr(got, name), float), np.asarray(getattr(ref, name), float)
        out[name] = float(np.max(np.abs(a - b))) if a.size else 0.0
    out["max"] = max(out[n] for n in fields)
    out["rule"] = repr(rule)
    out["reference"] = ref_name
    return out


# ---------------------------------------------------------------- sanity checks
def sanity_check(ds: xr.Dataset, *, rtol: float = 1e-6, raise_on_failure: bool = True) -> dict:
    """Check a :func:`dmft.simulate`, :func:`dmft.solve` or ``onepass`` output.

    Checks (each reported as ``name -> bool``):

    * ``finite``: every data variable finite;
    * ``losses_nonnegative``: ``train_loss``, ``test_loss``, ``risk`` >= 0 (all built-in
      losses are non-negative);
    * ``norm_psd``: every ``norm`` matrix positive semi-definite;
    * ``gf_energy_nonincreasing`` (gradient flow, ``attrs['dynamics'] == 'gf'``): the
      per-sample objective ``train_loss + ridge tr(norm) / (2 delta)`` never increases
      (beyond ``rtol`` relative).

    Raises ``AssertionError`` naming the failed checks unless ``raise_on_failure=False``.
    """
    res = {"finite": all(bool(np.all(np.isfinite(ds[v].values))) for v in ds.data_vars
                         if ds[v].dtype.kind in "fc")}
    neg = [v for v in ("train_loss", "test_loss", "risk") if v in ds]
    res["losses_nonnegative"] = all(bool(np.nanmin(ds[v].values) >= -1e-12) for v in neg)
    if "norm" in ds:
        q = ds["norm"].values
        q = q.reshape((-1,) + q.shape[-2:])
        ok = True
        for M in q:
            if np.all(np.isfinite(M)):
                w = np.linalg.eigvalsh(0.5 * (M + M.T))
                ok &= bool(w.min() >= -1e-9 * max(1.0, abs(w).max()))
        res["norm_psd"] = ok
    if ds.attrs.get("dynamics") == "gf" and "train_loss" in ds and "time" in ds["train_loss"].dims:
        e = ds["train_loss"]
        ridge, delta = float(ds.attrs.get("ridge", 0.0)), float(ds.attrs.get("delta", 1.0))
        if ridge and "norm" in ds:
            tr = ds["norm"].values.diagonal(axis1=-2, axis2=-1).sum(-1)
            e = e + ridge * tr / (2 * delta)
        inc = e.diff("time")
        scale = float(np.abs(e).max()) or 1.0
        res["gf_energy_nonincreasing"] = bool((inc <= rtol * scale).all())
    if raise_on_failure:
        bad = [k for k, v in res.items() if not v]
        if bad:
            raise AssertionError(f"sanity checks failed: {', '.join(bad)}")
    return res
