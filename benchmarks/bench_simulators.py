"""Simulator throughput: numba kernels vs plain numpy per-step loops (same RNG work),
per-step cost O(batch d) independent of n, and a memory-bandwidth estimate."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

import onepass
from dmft import models
from dmft.multipass import _kernels_simulate as mk
from dmft._jit import specialise
from dmft._kernels_normal import fill_normals, stream
from onepass._kernels import sgd_steps
from onepass._simulate import _padded

from _util import best_time, table

LOGISTIC = models.logistic()


def onepass_numba(d, steps, seed=0, threads=1):
    """The kernel with its in-kernel normals plus drawing the classes with numpy (as onepass.simulate does).

    ``threads > 1``: that many independent seeds at once on threads (as onepass.simulate runs
    its seeds); returns the wall time per step of all seeds together.
    """
    data = onepass.data.binary_mixture("identity", d=d)
    kernel = specialise(sgd_steps, grad=LOGISTIC.grad, teacher=LOGISTIC.teacher, error_model="numpy")
    consts = (np.zeros((0, d + d % 2)), _padded(data.means), _padded(np.sqrt(data.eigenvalues)))

    def one_seed(s):
        rng = np.random.default_rng(s)
        key, gamma = stream(np.random.SeedSequence(s))
        X = np.zeros((1, d + d % 2))
        for b in range(steps // 512):
            classes = (rng.random(512) > 0.5).astype(np.int64)
            kernel(LOGISTIC.param_array, X, *consts, d, classes, key, gamma, 512 * b, np.zeros((512, 0)),
                   np.array([[1.0], [0.0]]), True, np.full(512, 0.5), False, 0.0, 1.0, 0.0, 1)

    def run():
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_seed, range(seed, seed + threads)))

    run()
    return best_time(run) / (steps // 512 * 512 * threads)


@njit
def _fill_many(key, gamma, out, reps):
    for i in range(reps):
        fill_normals(key, gamma, np.uint64(i * out.size), out)


def normals_numba(d, reps=2048):
    """``fill_normals`` alone: the one-pass kernel's d normals per step."""
    key, gamma = stream(np.random.SeedSequence(0))
    out = np.empty(d + d % 2)
    _fill_many(key, gamma, out, 1)
    return best_time(lambda: _fill_many(key, gamma, out, reps)) / reps


def onepass_numpy(d, steps, seed=0):
    data = onepass.data.binary_mixture("identity", d=d)
    rng = np.random.default_rng(seed)
    means, sl = data.means, np.sqrt(data.eigenvalues)

    def run():
        X = np.zeros(d)
        for _ in range(steps):
            c = int(rng.random() > 0.5)
            a = means[c] + sl[c] * rng.standard_normal(d)
            r = X @ a
            g = 1 / (1 + np.exp(-r)) - (1.0 if c == 0 else 0.0)
            X -= (0.5 / d) * g * a

    return best_time(run) / steps


def multipass_numba(n, d, steps, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    Y = (rng.random((n, 1)) > 0.5).astype(float)
    theta = np.zeros((d, 1))
    idx = rng.integers(0, n, steps * batch)
    start = np.arange(0, steps * batch + 1, batch)
    kernel = specialise(mk.sgd_steps, grad=LOGISTIC.grad)
    c, decay = np.full(steps, 0.5), np.ones(steps)
    kernel(LOGISTIC.param_array, X, Y, theta, idx, start, c, decay)
    return best_time(lambda: kernel(LOGISTIC.param_array, X, Y, theta, idx, start, c, decay)) / steps


def multipass_numpy(n, d, steps, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    Y = (rng.random(n) > 0.5).astype(float)

    def run():
        theta = np.zeros(d)
        for _ in range(steps):
            i = rng.integers(0, n, batch)
            r = X[i] @ theta
            g = 1 / (1 + np.exp(-r)) - Y[i]
            theta -= 0.5 * (X[i].T @ g)

    return best_time(run) / steps


def bandwidth():
    a = np.ones(2 * 10**7)
    b = np.empty_like(a)
    t = best_time(lambda: np.copyto(b, a), 5)
    return 2 * a.nbytes / t  # bytes read + written per second


def main():
    d = 1000
    nb1, np1 = onepass_numba(d, 20000), onepass_numpy(d, 2000)
    nb2, np2 = multipass_numba(2000, d, 20000), multipass_numpy(2000, d, 2000)
    print("Per-step time, d = 1000, batch 1 (logistic)\n")
    print(table(["simulator", "numba [us]", "numpy [us]", "speed-up"],
                [("one-pass SGD", f"{nb1 * 1e6:.2f}", f"{np1 * 1e6:.2f}", f"{np1 / nb1:.0f}x"),
                 ("multi-pass SGD (n = 2000)", f"{nb2 * 1e6:.2f}", f"{np2 * 1e6:.2f}", f"{np2 / nb2:.0f}x")]))
    rows = []
    bw = bandwidth()
    for n in (1000, 2000, 4000, 8000, 16000, 32000):
        t = multipass_numba(n, d, 20000)
        # a step streams the row x_i (8 d bytes); theta (8 d bytes) stays in L1/L2
        rows.append((n, f"{8 * n * d / 2**20:.0f}", f"{t * 1e6:.2f}", f"{t / nb2:.2f}", f"{8 * d / t / bw:.0%}"))
    print(f"\nMulti-pass SGD time per step vs n at batch 1 (d = {d}; L3 cache 32 MB; numpy-copy bandwidth "
          f"{bw / 1e9:.1f} GB/s)\n")
    print(table(["n", "X [MB]", "us/step", "ratio to n = 2000", "x_i stream / bandwidth"], rows))
    rows = []
    for batch in (1, 4, 16, 64):
        t = multipass_numba(4000, d, 4000, batch)
        rows.append((batch, f"{t * 1e6:.2f}", f"{batch / t:.3g}"))
    print("\nMulti-pass SGD vs batch (n = 4000): time per step grows like batch\n")
    print(table(["batch", "us/step", "sample-gradients/s"], rows))
    rng = np.random.default_rng(0)
    rows = []
    for dd in (30, 100, 300, 1000, 3000):
        nb, nb2t, npy = onepass_numba(dd, 20480), onepass_numba(dd, 20480, threads=2), onepass_numpy(dd, 2000)
        t_np = best_time(lambda: rng.standard_normal((512, dd))) / 512
        t_nb = normals_numba(dd)
        rows.append((dd, f"{nb * 1e6:.2f}", f"{npy * 1e6:.2f}", f"{npy / nb:.1f}x", f"{nb2t * 1e6:.2f}",
                     f"{npy / nb2t:.1f}x", f"{t_np * 1e6:.2f}", f"{t_nb * 1e6:.2f}", f"{t_np / t_nb:.1f}x",
                     f"{nb / t_nb:.2f}"))
    print("\nOne-pass SGD vs d: every step draws d fresh normals (numpy loop: numpy's ziggurat; numba: the "
          "in-kernel vectorised Box-Muller of dmft._kernels_normal). 2 threads: two seeds at once, wall time "
          "per step, as onepass.simulate runs its seeds\n")
    print(table(["d", "numba [us/step]", "numpy [us/step]", "speed-up", "numba, 2 seeds on 2 threads [us/step]",
                 "speed-up", "numpy d normals [us]", "numba d normals [us]", "normals speed-up",
                 "numba step / its normals"], rows))
    # one sample gradient streams x_i (8d bytes) and reads+writes theta (16d bytes)
    need = 24 * d / nb2
    print(f"\nmemory bandwidth (numpy copy) {bw / 1e9:.1f} GB/s; multi-pass SGD moves {need / 1e9:.1f} GB/s "
          f"= {need / bw:.0%} of it; one-pass SGD draws d normals per step as well")


if __name__ == "__main__":
    main()
