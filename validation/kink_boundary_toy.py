"""The GF response of a model whose force jumps at a kink, on a fixed smooth field: where the
pathwise tangents stop and the boundary terms begin (docs/dmft_theory.md, "Kinks").

One sample of phase retrieval's force, ``g(r) = 2 (y - |r|) sign(r)`` (``r = 0`` repels from
both sides), under the DMFT's sample-side equation with a fixed kernel and a fixed smooth
Gaussian field instead of the closure, explicit Euler on ``t_j = j dt``:

    r_j = w_j + h_j + c dt sum_{l<j} R(t_j, t_l) g(r_l),    F = c dt sum_{l<N} g(r_l),
    w(t) = a + b t + s sin(t + phi),  R(t, s) = exp(-(t - s) / 2),  y = |0.7 a + 0.7 xi|.

The response ``dE[F]/d eps`` to ``h = eps eta`` (a bump ``eta`` in time) is measured by brute
force (central differences on common random numbers) and estimated, as the DMFT would need it,
from one run of the unperturbed paths:

* ``pathwise``: the adjoint of the paths with ``g' = -2`` and, at a crossing between two steps,
  the Dirac part integrated over it, ``4 y / |r_j - r_{j-1}|`` (the saltation);
* ``start``: paths that start near the plane and recede from it. A kick at ``t_0`` moves the plane
  through them, and their fate flips to the other side: a boundary term, the density of
  ``r_0`` at 0 (a Gaussian kernel of width ``hb``) times the change of ``F``;
* ``touch``: paths whose ``r`` has a local extremum near the plane (a parabola through three
  steps), whose fate flips when an earlier kick moves the extremum through the plane: the same
  boundary term, times the extremum's sensitivity to the kick (a seed of the adjoint). The
  paths that touch lie on one side of that boundary only (their neighbours across it cross),
  so the kernel, symmetric about the plane, counts twice its value. The starts lie on both
  sides of theirs (a path receding to the left next to one receding to the right).

The change of ``F`` is that of a pair of ghosts: the path's field shifted from the touch (or
start) on so that the touch lies on the plane, nudged across and back, each then run with its
natural force (``pair``). The alternative ``forced`` ghost keeps the path's own field and takes
the other side's force until it has crossed; it flips paths that the field would bring back.

``--rough RHO`` adds an integrated Brownian motion to the field, so that its derivative has a
Brownian part of rate ``RHO^2``. The DMFT's own field should have such a part wherever ``g``
jumps at a kink (then ``E[g(t) g(s)]`` has a kink at ``t = s``), and a rough derivative has many
extrema near each extremum, which the touches count.

``python validation/kink_boundary_toy.py [--paths 300000] [--eps 0.003] [--seed 1] [--forced] [--rough 0]``
"""
from __future__ import annotations

import argparse

import numpy as np

C_LR, DT, N = 0.2, 0.04, 60
BUMPS = {"t_0 only": lambda t: (t == 0).astype(float),
         "early (t ~ 0.1)": lambda t: np.exp(-0.5 * ((t - 0.1) / 0.06) ** 2),
         "mid (t ~ 1)": lambda t: np.exp(-0.5 * ((t - 1.0) / 0.15) ** 2),
         "all times": np.ones_like}


def g(r, y):
    return 2 * (y - np.abs(r)) * np.sign(r)


class Toy:
    """The paths of one seed: field ``W`` (P, N), labels ``y``, kernel ``R`` and the unperturbed run."""

    def __init__(self, paths: int, seed: int, rough: float = 0.0):
        rng = np.random.default_rng(seed)
        self.t = np.arange(N) * DT
        t = self.t
        self.R = np.exp(-0.5 * (t[:, None] - t[None, :])) * (t[:, None] > t[None, :])
        a, b, s = rng.standard_normal(paths), 0.6 * rng.standard_normal(paths), 0.5 * rng.standard_normal(paths)
        phase = rng.uniform(0, 2 * np.pi, paths)
        self.W = a[:, None] + b[:, None] * t + s[:, None] * np.sin(t + phase[:, None])
        if rough:  # an integrated Brownian motion: the field's derivative has a Brownian part of rate rough^2
            self.W += DT * np.cumsum(rough * np.sqrt(DT) * np.cumsum(rng.standard_normal((paths, N)), axis=1), axis=1)
        self.y = np.abs(0.7 * a + 0.7 * rng.standard_normal(paths))
        self.r, self.G = self.run(np.zeros(N))

    def run(self, h):
        P = len(self.y)
        r, G = np.zeros((P, N)), np.zeros((P, N))
        for j in range(N):
            r[:, j] = self.W[:, j] + h[j] + C_LR * DT * (G[:, :j] @ self.R[j, :j])
            G[:, j] = g(r[:, j], self.y)
        return r, G

    def brute(self, eta, eps):
        """Central difference of ``F`` per path (P,)."""
        Gp, Gm = self.run(eps * eta)[1], self.run(-eps * eta)[1]
        return C_LR * DT * (Gp.sum(1) - Gm.sum(1)) / (2 * eps)

    def adjoint(self, seed):
        """``V_l = d(F + seeds)/dr_l`` (P, N) with the a.e. ``g'`` and the crossings' saltation."""
        r, y = self.r, self.y
        gp = np.full(r.shape, -2.0)
        dx = np.abs(np.diff(r, axis=1))
        crossed = r[:, 1:] * r[:, :-1] < 0
        gp[:, 1:] += np.where(crossed, 4 * y[:, None] / np.where(crossed, dx, 1.0), 0.0)
        V = np.zeros_like(r)
        for l in range(N - 1, -1, -1):
            later = V[:, l + 1:] @ self.R[l + 1:, l] if l + 1 < N else 0.0
            V[:, l] = C_LR * DT * (1.0 + later) * gp[:, l] + seed[:, l]
        return V

    def ghost_change(self, who, tau, offset, side, forced: bool):
        """``F(across) - F(back)`` of the ghosts of paths ``who`` from step ``tau`` (``side`` the
        path's side of the plane there); ``forced``: one ghost on the path's own field with the
        other side's force until it has crossed, minus the path."""
        F = []
        for nudge in ((-1.0,) if forced else (-1.0, 1.0)):
            dG = np.zeros((len(who), N))
            crossed = np.zeros(len(who), bool)
            for j in range(N):
                on = tau <= j
                rr = self.W[who, j] + C_LR * DT * ((self.G[who, :j] + dG[:, :j]) @ self.R[j, :j])
                if forced:
                    crossed |= on & (side * rr < 0)
                    rr = np.where(on & ~crossed, -side * 1e-9, rr)
                else:
                    rr = np.where(j == tau, nudge * side * 1e-9, rr + offset)
                dG[:, j] = np.where(on, g(rr, self.y[who]) - self.G[who, j], 0.0)
            F.append(C_LR * DT * dG.sum(1))
        return F[0] if forced else F[0] - F[1]

    def boundary(self, hb_rel: float, forced: bool):
        """The start term (P,), the kick at ``t_0`` alone, and the touches' seeds (P, N)."""
        r = self.r
        hb = hb_rel * r[:, 0].std()
        kernel = lambda x: np.exp(-0.5 * (x / hb) ** 2) / (np.sqrt(2 * np.pi) * hb)
        start = np.zeros(len(r))
        who = np.where((r[:, 0] * r[:, 1] > 0) & (np.abs(r[:, 1]) > np.abs(r[:, 0])) & (np.abs(r[:, 0]) < 5 * hb))[0]
        side = np.sign(r[who, 0])
        start[who] = kernel(r[who, 0]) * -side * self.ghost_change(who, np.zeros(len(who), int), -r[who, 0], side,
                                                                  forced)
        x0, x1, x2 = r[:, 2:], r[:, 1:-1], r[:, :-2]
        touch = (x1 * x0 > 0) & (x1 * x2 > 0) & (np.abs(x1) < np.abs(x2)) & (np.abs(x1) <= np.abs(x0))
        who, at = np.where(touch)
        at = at + 1
        curvature = r[who, at + 1] - 2 * r[who, at] + r[who, at - 1]
        xe = r[who, at] - (r[who, at + 1] - r[who, at - 1]) ** 2 / (8 * np.where(curvature == 0, 1e-300, curvature))
        xe = np.where(xe * r[who, at] < 0, 0.0, xe)
        near = np.abs(xe) < 5 * hb
        who, at, xe = who[near], at[near], xe[near]
        side = np.sign(r[who, at])
        # touches lie on one side of their boundary only (the paths across it cross instead), so
        # the kernel sees half the density there: twice its value
        seeds = np.zeros_like(r)
        np.add.at(seeds, (who, at), 2 * kernel(xe) * -side * self.ghost_change(who, at, -xe, side, forced))
        return start, seeds


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=300000)
    ap.add_argument("--eps", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hb", type=float, default=0.1, help="kernel width over the SD of r(t_0)")
    ap.add_argument("--forced", action="store_true")
    ap.add_argument("--rough", type=float, default=0.0,
                    help="the scale of a Brownian part in the field's derivative (its rate is the square)")
    a = ap.parse_args(argv)
    toy = Toy(a.paths, a.seed, a.rough)
    start, seeds = toy.boundary(a.hb, a.forced)
    pathwise = toy.adjoint(np.zeros_like(seeds))
    touches = toy.adjoint(seeds) - pathwise
    mean_se = lambda x: (float(x.mean()), float(x.std() / np.sqrt(len(x))))
    out = {}
    print(f"{a.paths} paths, eps = {a.eps}, {'forced' if a.forced else 'pair'} ghosts; dE[F]/d eps, mean (SE):")
    for name, bump in BUMPS.items():
        eta = bump(toy.t)
        parts = {"brute force": toy.brute(eta, a.eps), "pathwise": pathwise @ eta, "start": start * eta[0],
                 "touches": touches @ eta}
        parts["estimate"] = parts["pathwise"] + parts["start"] + parts["touches"]
        out[name] = {k: mean_se(v) for k, v in parts.items()}
        print(f"  {name:16s}" + "  ".join(f"{k} {m:+.4f}({s:.4f})" for k, (m, s) in out[name].items()))
    return out


if __name__ == "__main__":
    main()
