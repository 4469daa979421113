"""One-pass ODE cost: binned mode independent of d, exact mode linear in d, vs simulation;
cost of the groups (auto vs the mode it picks) and of the simulator's held-out risk.

Binary logistic regression, extreme power law (alpha = 1.2, beta = 0.2), lr = 0.5,
t_max = 20, 41 output times. Ratios are taken within one run.
"""
import onepass
from dmft import models
from dmft.data import make_groups

from _util import best_time, table

MODEL = models.logistic()
SPEC = onepass.data.PowerLaw(1.2, 0.2)
KW = dict(lr=0.5, t_max=20.0, n_time=41)


def solve_time(d, groups, repeat=3):
    data = onepass.data.binary_mixture(SPEC, d=d)
    return best_time(lambda: onepass.solve(MODEL, data, groups=groups, **KW), repeat)


def main():
    onepass.solve(MODEL, onepass.data.binary_mixture(SPEC, d=100), **KW)  # compile
    base = solve_time(10**3, onepass.Binned(64))
    rows = [(f"{d:.0e}", f"{t:.3f}", f"{t / base:.2f}")
            for d in (10**3, 10**4, 10**5, 10**6) for t in [solve_time(d, onepass.Binned(64))]]
    print("Binned(64): solve time vs d (ratio to d = 1e3)\n")
    print(table(["d", "seconds", "ratio"], rows))

    ex = [(d, solve_time(d, "exact", repeat=1)) for d in (1000, 2000, 4000, 8000)]
    print("\nExact mode: solve time vs d (linear: ratio / (d/1e3) ~ 1)\n")
    print(table(["d", "seconds", "ratio / (d/1e3)"],
                [(d, f"{t:.2f}", f"{t / ex[0][1] / (d / 1000):.2f}") for d, t in ex]))

    data = onepass.data.binary_mixture(SPEC, d=10**4)
    onepass.simulate(MODEL, data, t_max=0.01, n_time=2, n_seeds=1, progress=False)
    t_sim = best_time(lambda: onepass.simulate(MODEL, data, n_seeds=1, progress=False, **KW), 1)
    t_ode = solve_time(10**4, onepass.Binned(64))
    print(f"\nd = 1e4, same curve: one simulation seed {t_sim:.2f} s, binned ODE {t_ode:.3f} s, "
          f"ratio {t_sim / t_ode:.0f}x (per seed; a curve with error bars needs many seeds)")

    print("\nGroups at d = 1e6 (ms, best of 5): auto vs the mode it picks\n")
    rows = []
    for name, spec in (("power law", SPEC), ("zero-one", onepass.data.ZeroOne())):
        data = onepass.data.binary_mixture(spec, d=10**6)
        picked = make_groups(data, "auto").mode
        mode = "exact" if picked == "exact" else onepass.Binned(64)
        rows.append((name, picked, *(f"{1e3 * best_time(lambda g=g: make_groups(data, g), 5):.1f}"
                                     for g in ("auto", mode))))
    print(table(["spectrum", "auto picks", "auto [ms]", "that mode [ms]"], rows))

    data = onepass.data.binary_mixture(SPEC, d=1000)
    sim = dict(n_seeds=1, workers=1, progress=False, **KW)
    onepass.simulate(MODEL, data, **sim)
    t_small = best_time(lambda: onepass.simulate(MODEL, data, n_test=2, **sim), 3)
    t_full = best_time(lambda: onepass.simulate(MODEL, data, **sim), 3)
    print(f"\nd = 1e3, one seed, 41 times: simulation with n_test = 2 {t_small:.3f} s, with the default "
          f"n_test = 10^4 {t_full:.3f} s (held-out set {t_full - t_small:.3f} s)")


if __name__ == "__main__":
    main()
