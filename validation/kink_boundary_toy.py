"""The GF response of a model whose force jumps at a kink, on a fixed field: where the pathwise
tangents stop and the boundary terms begin (docs/dmft_theory.md, "Kinks").

One sample of phase retrieval's force, ``g(r) = 2 (y - |r|) sign(r)`` (``r = 0`` repels from
both sides), under the DMFT's sample-side equation with a fixed kernel and a fixed Gaussian field
instead of the closure, explicit Euler on ``t_j = j dt``:

    r_j = w_j + h_j + c dt sum_{l<j} R(t_j, t_l) g(r_l),    F = c dt sum_{l<N} g(r_l).

The built-in field and kernel are smooth: ``w(t) = a + b t + s sin(t + phi)``, ``R(t, s) =
exp(-(t - s) / 2)``, ``y = |0.7 a + 0.7 xi|``, ``c = 0.2``, ``dt = 0.04``. ``--kernels FILE``
takes them from a phase-retrieval ``dmft.solve`` saved as netCDF instead (its output times on
its grid): ``w ~ N(0, C)`` with the solve's ``correlation``, its ``response`` as ``R``, its
``lr`` as ``c``, and ``y = |w*|`` independent of ``w`` (phase retrieval's overlap is 0).
``validation/data/pr_gf_kinked_kernels.nc`` holds those of a GF solve without smoothing (boundary
terms with clusters and ``2 K``; docs/dmft_theory.md, "Kinks"), whose field has the rough
derivative of a kinked model; a smoothed solve's field does not.

The response ``dE[F]/d eps`` to ``h = eps eta`` (a bump ``eta`` in time) is measured by brute
force (central differences on common random numbers) and estimated, as the DMFT would need it,
from one run of the unperturbed paths:

* ``pathwise``: the adjoint of the paths with ``g' = -2`` and, at a crossing between two steps,
  the Dirac part integrated over it, ``4 y / |r_j - r_{j-1}|`` (the saltation);
* ``start``: paths that start near the plane and recede from it. A kick at ``t_0`` moves the plane
  through them, and their fate flips to the other side: a boundary term, the density of
  ``r_0`` at 0 (a Gaussian kernel ``K`` of width ``hb``) times the change of ``F``;
* ``touch``: paths whose ``r`` has a local extremum near the plane (a parabola through three
  steps), whose fate flips when an earlier kick moves the extremum through the plane: the same
  boundary term, times the extremum's sensitivity to the kick (a seed of the adjoint).

Touches lie on one side of their boundary only (their neighbours across it cross), so their
density at the plane is that of one-sided data at the edge of its support: ``--kernel twice``
takes twice the symmetric kernel, right only where the density is flat over ``hb``;
``--kernel local-linear`` (default) the boundary kernel ``K(x) (a2 - a1 |x|) / (a0 a2 - a1^2)``
(``a_i = int_0^inf u^i K``), whose bias is ``O(hb^2)``. The starts lie on both sides of theirs
(a path receding to the left next to one receding to the right) and take ``K``.

A field whose derivative is rough has many local extrema near each extremum. A kick flips the
path at the lowest of them first, so touches count in clusters (``--rise``, default 1): a run of
touches with no crossing between them, in which the path never rises more than ``rise hb`` above
the lowest touch so far, counts once, at that lowest touch (``--rise 0``: every extremum).

The change of ``F`` is that of a pair of ghosts: the path's field shifted from the touch (or
start) on so that the touch lies on the plane, nudged across and back, each then run with its
natural force (``pair``). The alternative ``forced`` ghost keeps the path's own field and takes
the other side's force until it has crossed; it flips paths that the field would bring back.

``--rough RHO`` adds an integrated Brownian motion to the built-in field, so that its derivative
has a Brownian part of rate ``RHO^2``. The DMFT's own field has such a part wherever ``g`` jumps
at a kink (then ``E[g(t) g(s)]`` has a kink at ``t = s``).

``python validation/kink_boundary_toy.py [--paths 300000] [--eps 0.003] [--seed 1] [--hb 0.1]
[--rise 1] [--kernel local-linear|twice] [--forced] [--rough 0] [--kernels FILE.nc]``
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

C_LR, DT, N = 0.2, 0.04, 60
KINKED_KERNELS = Path(__file__).resolve().parent / "data" / "pr_gf_kinked_kernels.nc"


def _bump(center: float, width: float):
    return lambda t: np.exp(-0.5 * ((t - center) / width) ** 2)


def _bumps(early: float, mid: float) -> dict:
    return {"t_0 only": lambda t: (t == 0).astype(float), f"early (t ~ {early:g})": _bump(early, 0.6 * early),
            f"mid (t ~ {mid:g})": _bump(mid, 0.15), "all times": np.ones_like}


def g(r, y):
    return 2 * (y - np.abs(r)) * np.sign(r)


class Toy:
    """The paths of one seed on a fixed field: ``W`` (P, N) on the steps ``t`` (N,), labels ``y``
    (P,), the kernel ``R`` (N, N, strictly lower), the step ``c`` of ``c dt``, the unperturbed run."""

    def __init__(self, W, y, R, t, c, bumps):
        self.W, self.y, self.R, self.t, self.c, self.bumps = W, y, R, t, c, bumps
        self.dt, self.N, self._brute = float(t[1] - t[0]), len(t), {}
        self.r, self.G = self.run(np.zeros(self.N))

    @classmethod
    def smooth(cls, paths: int, seed: int, rough: float = 0.0) -> "Toy":
        """The built-in smooth field (plus an integrated Brownian motion of scale ``rough``)."""
        rng = np.random.default_rng(seed)
        t = np.arange(N) * DT
        R = np.exp(-0.5 * (t[:, None] - t[None, :])) * (t[:, None] > t[None, :])
        a, b, s = rng.standard_normal(paths), 0.6 * rng.standard_normal(paths), 0.5 * rng.standard_normal(paths)
        phase = rng.uniform(0, 2 * np.pi, paths)
        W = a[:, None] + b[:, None] * t + s[:, None] * np.sin(t + phase[:, None])
        if rough:  # an integrated Brownian motion: the field's derivative has a Brownian part of rate rough^2
            W += DT * np.cumsum(rough * np.sqrt(DT) * np.cumsum(rng.standard_normal((paths, N)), axis=1), axis=1)
        y = np.abs(0.7 * a + 0.7 * rng.standard_normal(paths))
        return cls(W, y, R, t, C_LR, _bumps(0.1, 1.0))

    @classmethod
    def from_solve(cls, ds, paths: int, seed: int) -> "Toy":
        """The field and kernel of a phase-retrieval ``dmft.solve`` (``ds``, output times on its grid)."""
        if ds.attrs.get("model") != "phase_retrieval" or ds.attrs.get("k") != 1:
            raise ValueError(f"--kernels: a k = 1 phase_retrieval solve is needed, got model "
                             f"{ds.attrs.get('model')!r} with k = {ds.attrs.get('k')}")
        times = ds.time.values
        if not np.allclose(np.diff(times), float(ds.attrs["dt"])):
            raise ValueError(f"--kernels: the solve's output times must be its grid (dt = {ds.attrs['dt']}), "
                             f"got spacings {np.unique(np.round(np.diff(times), 12))}")
        t = times[:-1]
        C = ds.correlation.values[:-1, :-1, 0, 0]
        lam, V = np.linalg.eigh(0.5 * (C + C.T))
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((paths, len(t))) @ (V * np.sqrt(np.clip(lam, 0.0, None))).T
        R = np.tril(ds.response.values[:-1, :-1, 0, 0], -1)
        T = float(times[-1])
        return cls(W, np.abs(rng.standard_normal(paths)), R, t, float(ds.attrs["lr"]), _bumps(T / 8, T / 2))

    def run(self, h):
        P = len(self.y)
        r, G = np.zeros((P, self.N)), np.zeros((P, self.N))
        for j in range(self.N):
            r[:, j] = self.W[:, j] + h[j] + self.c * self.dt * (G[:, :j] @ self.R[j, :j])
            G[:, j] = g(r[:, j], self.y)
        return r, G

    def brute(self, bump: str, eps: float):
        """Central difference of ``F`` per path (P,) for the bump named ``bump`` (kept: the same
        paths serve several estimators)."""
        if (bump, eps) not in self._brute:
            eta = self.bumps[bump](self.t)
            Gp, Gm = self.run(eps * eta)[1], self.run(-eps * eta)[1]
            self._brute[bump, eps] = self.c * self.dt * (Gp.sum(1) - Gm.sum(1)) / (2 * eps)
        return self._brute[bump, eps]

    def adjoint(self, seed):
        """``V_l = d(F + seeds)/dr_l`` (P, N) with the a.e. ``g'`` and the crossings' saltation."""
        r, y = self.r, self.y
        gp = np.full(r.shape, -2.0)
        dx = np.abs(np.diff(r, axis=1))
        crossed = r[:, 1:] * r[:, :-1] < 0
        gp[:, 1:] += np.where(crossed, 4 * y[:, None] / np.where(crossed, dx, 1.0), 0.0)
        V = np.zeros_like(r)
        for l in range(self.N - 1, -1, -1):
            later = V[:, l + 1:] @ self.R[l + 1:, l] if l + 1 < self.N else 0.0
            V[:, l] = self.c * self.dt * (1.0 + later) * gp[:, l] + seed[:, l]
        return V

    def ghost_change(self, who, tau, offset, side, forced: bool):
        """``F(across) - F(back)`` of the ghosts of paths ``who`` from step ``tau`` (``side`` the
        path's side of the plane there); ``forced``: one ghost on the path's own field with the
        other side's force until it has crossed, minus the path."""
        F = []
        for nudge in ((-1.0,) if forced else (-1.0, 1.0)):
            dG = np.zeros((len(who), self.N))
            crossed = np.zeros(len(who), bool)
            for j in range(self.N):
                on = tau <= j
                rr = self.W[who, j] + self.c * self.dt * ((self.G[who, :j] + dG[:, :j]) @ self.R[j, :j])
                if forced:
                    crossed |= on & (side * rr < 0)
                    rr = np.where(on & ~crossed, -side * 1e-9, rr)
                else:
                    rr = np.where(j == tau, nudge * side * 1e-9, rr + offset)
                dG[:, j] = np.where(on, g(rr, self.y[who]) - self.G[who, j], 0.0)
            F.append(self.c * self.dt * dG.sum(1))
        return F[0] if forced else F[0] - F[1]

    def boundary(self, hb_rel: float, forced: bool, rise: float = 1.0, kernel: str = "local-linear"):
        """The start term (P,), the kick at ``t_0`` alone, and the touches' seeds (P, N)."""
        r = self.r
        hb = hb_rel * r[:, 0].std()
        K = lambda x: np.exp(-0.5 * (x / hb) ** 2) / (np.sqrt(2 * np.pi) * hb)
        start = np.zeros(len(r))
        who = np.where((r[:, 0] * r[:, 1] > 0) & (np.abs(r[:, 1]) > np.abs(r[:, 0])) & (np.abs(r[:, 0]) < 5 * hb))[0]
        side = np.sign(r[who, 0])
        start[who] = K(r[who, 0]) * -side * self.ghost_change(who, np.zeros(len(who), int), -r[who, 0], side, forced)
        x0, x1, x2 = r[:, 2:], r[:, 1:-1], r[:, :-2]
        touch = (x1 * x0 > 0) & (x1 * x2 > 0) & (np.abs(x1) < np.abs(x2)) & (np.abs(x1) <= np.abs(x0))
        who, at = np.where(touch)
        at = at + 1
        curvature = r[who, at + 1] - 2 * r[who, at] + r[who, at - 1]
        xe = r[who, at] - (r[who, at + 1] - r[who, at - 1]) ** 2 / (8 * np.where(curvature == 0, 1e-300, curvature))
        xe = np.where(xe * r[who, at] < 0, 0.0, xe)
        near = np.abs(xe) < 5 * hb
        who, at, xe = who[near], at[near], xe[near]
        keep = _cluster_minima(r, who, at, xe, rise * hb)
        who, at, xe = who[keep], at[keep], xe[keep]
        side = np.sign(r[who, at])
        seeds = np.zeros_like(r)
        weight = one_sided_kernel(xe, hb) if kernel == "local-linear" else 2 * K(xe)
        np.add.at(seeds, (who, at), weight * -side * self.ghost_change(who, at, -xe, side, forced))
        return start, seeds


def one_sided_kernel(x, hb):
    """The local-linear boundary kernel for the density at 0 of data on one side of it: the
    Gaussian ``K`` of width ``hb`` times ``(a2 - a1 |x|) / (a0 a2 - a1^2)``, ``a_i = int_0^inf u^i
    K(u) du`` (``1/2``, ``hb / sqrt(2 pi)``, ``hb^2 / 2``), so that ``int_0^inf`` of it against
    ``1`` is 1 and against ``u`` is 0: the estimate's bias is ``O(hb^2)`` where ``2 K`` leaves
    ``O(hb)`` (a density that is not flat at the plane)."""
    a1 = hb / np.sqrt(2 * np.pi)
    K = np.exp(-0.5 * (x / hb) ** 2) / (np.sqrt(2 * np.pi) * hb)
    return K * (0.5 * hb * hb - a1 * np.abs(x)) / (0.25 * hb * hb - a1 * a1)


def _cluster_minima(r, who, at, xe, rise):
    """Which touches (sorted by path, then step) are the lowest of their cluster. A cluster is a
    run of touches of one path with no crossing between them, in which the path never rises more
    than ``rise`` above the lowest touch so far; a lower touch replaces the cluster's lowest."""
    flat = who * r.shape[1] + at
    if not len(flat):
        return np.ones(0, bool)
    highest = np.maximum.reduceat(np.abs(r).ravel(), flat)  # from each touch up to the next
    signs = np.concatenate([[0], np.cumsum(r.ravel()[1:] * r.ravel()[:-1] < 0)])
    crossed = np.append(signs[flat[1:]] > signs[flat[:-1]], True)
    keep = np.ones(len(who), bool)
    best, peak = -1, 0.0
    for i in range(len(who)):
        if best >= 0 and who[i] == who[best] and not crossed[i - 1]:
            peak = max(peak, highest[i - 1])
            if peak <= abs(xe[best]) + rise:
                if abs(xe[i]) < abs(xe[best]):
                    keep[best], best, peak = False, i, 0.0
                else:
                    keep[i] = False
                continue
        best, peak = i, 0.0
    return keep


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=300000)
    ap.add_argument("--eps", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hb", type=float, default=0.1, help="kernel width over the SD of r(t_0)")
    ap.add_argument("--rise", type=float, default=1.0,
                    help="touches count once per cluster, split where the path rises RISE kernel widths (0: each)")
    ap.add_argument("--kernel", choices=("local-linear", "twice"), default="local-linear",
                    help="the touches' density at the plane: the boundary kernel, or twice the symmetric one")
    ap.add_argument("--forced", action="store_true")
    ap.add_argument("--rough", type=float, default=0.0,
                    help="the scale of a Brownian part in the field's derivative (its rate is the square)")
    ap.add_argument("--kernels", default=None, help="a phase-retrieval dmft.solve (netCDF) whose C and R to use")
    a = ap.parse_args(argv)
    if a.kernels is not None:
        from dmft import output
        toy = Toy.from_solve(output.load(a.kernels), a.paths, a.seed)
    else:
        toy = Toy.smooth(a.paths, a.seed, a.rough)
    print(f"{a.paths} paths, eps = {a.eps}, {'forced' if a.forced else 'pair'} ghosts, rise {a.rise}, "
          f"{a.kernel} kernel; dE[F]/d eps, mean (SE):")
    return compare(toy, a.eps, a.hb, a.forced, a.rise, a.kernel)


def compare(toy: Toy, eps: float, hb: float = 0.1, forced: bool = False, rise: float = 1.0,
            kernel: str = "local-linear", verbose: bool = True, only=None) -> dict:
    """Per bump (those named in ``only``; None: all), the brute force and the estimate's parts:
    ``{bump: {part: (mean, SE)}}``."""
    start, seeds = toy.boundary(hb, forced, rise, kernel)
    pathwise = toy.adjoint(np.zeros_like(seeds))
    touches = toy.adjoint(seeds) - pathwise
    mean_se = lambda x: (float(x.mean()), float(x.std() / np.sqrt(len(x))))
    out = {}
    for name, bump in toy.bumps.items():
        if only is not None and name not in only:
            continue
        eta = bump(toy.t)
        parts = {"brute force": toy.brute(name, eps), "pathwise": pathwise @ eta, "start": start * eta[0],
                 "touches": touches @ eta}
        parts["estimate"] = parts["pathwise"] + parts["start"] + parts["touches"]
        out[name] = {k: mean_se(v) for k, v in parts.items()}
        if verbose:
            print(f"  {name:16s}" + "  ".join(f"{k} {m:+.4f}({s:.4f})" for k, (m, s) in out[name].items()))
    return out


if __name__ == "__main__":
    main()
