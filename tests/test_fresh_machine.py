"""A fresh machine: a kernel compiled by one process is loaded from the disk caches by the
next, whatever its hash seed; compiled for another CPU target the library gives the host's
numbers within the tolerance stated in docs/reliability.md ("Reproducibility")."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: a real specialised kernel (dmft.solve's labels with the linear model's teacher bound);
#: prints the kernel's generated file, numba's cache hits and misses for it, and this
#: process's iteration order of a set of two strings (it follows the hash seed)
_COMPILE_ONE_KERNEL = """
import json, sys
import numpy as np
from dmft import _jit, models
from dmft.multipass import _kernels_solve
m = models.linear_regression(0.5)
kernel = _jit.specialise(_kernels_solve.labels, teacher=m.teacher)
out = np.zeros((3, m.label_dim))
kernel(m.param_array, np.ones((3, m.k_star)), np.ones((3, m.noise_dim)), out)
print(json.dumps({"file": sys.modules[kernel.py_func.__module__].__file__,
                  "hits": sum(kernel.stats.cache_hits.values()),
                  "misses": sum(kernel.stats.cache_misses.values()),
                  "set_order": list({"reassoc", "contract"}), "out": out.tolist()}))
"""


def _fresh_env(tmp_path, **extra):
    """This interpreter's environment with empty kernel caches under ``tmp_path``."""
    return {**os.environ, "SGD_DYNAMICS_CACHE": str(tmp_path / "kernels"),
            "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **extra}


def _run(code, env) -> str:
    """Standard output of ``python -c code``."""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _snapshot(*folders):
    """Every file under ``folders`` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for f in folders for p in Path(f).rglob("*") if p.is_file()}


def test_kernel_cache_key_does_not_depend_on_the_hash_seed(tmp_path):
    # hash seeds 0 and 1 iterate {"reassoc", "contract"} in opposite orders (asserted below,
    # so the test keeps probing an order-dependent key); the second process must find the
    # first one's generated module and numba's compiled code, and write nothing
    first = json.loads(_run(_COMPILE_ONE_KERNEL, _fresh_env(tmp_path, PYTHONHASHSEED="0")))
    before = _snapshot(tmp_path / "kernels", tmp_path / "numba")
    second = json.loads(_run(_COMPILE_ONE_KERNEL, _fresh_env(tmp_path, PYTHONHASHSEED="1")))
    assert first["set_order"] != second["set_order"]
    assert (first["misses"], first["hits"]) == (1, 0)  # the caches started empty
    assert second["file"] == first["file"]
    assert (second["misses"], second["hits"]) == (0, 1)
    assert _snapshot(tmp_path / "kernels", tmp_path / "numba") == before
    assert second["out"] == first["out"]


# ---------------------------------------------------------------- another CPU target
#: documented tolerance (docs/reliability.md, "Reproducibility") of ``max|a - b| / max|a|``
#: per output variable between the host-compiled and a generic x86-64 build, with the
#: largest difference measured there (these runs and longer ones) in brackets
CROSS_TARGET_RTOL = {
    "dmft.simulate sgd": 1e-12,      # a few ulps (6e-16)
    "onepass.simulate sgd": 1e-12,   # (1.2e-15)
    "onepass.simulate hsgd": 1e-12,  # (4e-16)
    "dmft.solve sgd": 1e-9,          # (values 3.4e-12, standard errors 2.2e-11)
    "dmft.solve gf": 1e-7,           # (values 1.2e-9; standard errors: GF_SEM_RTOL)
    "dmft.simulate gf": 1e-6,        # adaptive RK45 at rtol 1e-7: accepted steps can differ (3.3e-7)
    "onepass.solve": 1e-6,           # adaptive DOP853 at rtol 1e-7 (2e-15)
}
#: dmft.solve GF's standard errors are small differences of replica means (3.4e-7)
GF_SEM_RTOL = 1e-5


def _entry_outputs():
    """Short runs of each entry point: ``{"entry|variable": array}``."""
    import dmft
    import onepass
    from dmft import models
    from onepass import data as D

    lin, huber = models.linear_regression(0.5), models.huber_tanh()
    ts = D.teacher_student("identity", d=200)
    solve = dict(lr=0.5, delta=2.0, t_max=1.0, n_time=5, n_paths=1024, progress=False, seed=1)
    sim = dict(lr=0.5, delta=2.0, t_max=1.0, n_time=5, d=200, n_seeds=2, progress=False, seed=1)
    one = dict(lr=0.5, t_max=2.0, n_time=5)
    runs = {
        "dmft.solve sgd": dmft.solve(huber, dynamics="sgd", **solve),
        "dmft.solve gf": dmft.solve(lin, dynamics="gf", **solve),
        "dmft.simulate sgd": dmft.simulate(huber, dynamics="sgd", **sim),
        "dmft.simulate gf": dmft.simulate(huber, dynamics="gf", **sim),
        "onepass.simulate sgd": onepass.simulate(lin, ts, n_seeds=2, progress=False, **one),
        "onepass.simulate hsgd": onepass.simulate(lin, ts, n_seeds=2, progress=False, dynamics="hsgd", dt=0.05, **one),
        "onepass.solve": onepass.solve(lin, ts, **one),
    }
    return {f"{entry}|{v}": ds[v].values for entry, ds in runs.items() for v in ds.data_vars
            if ds[v].dtype.kind == "f"}


@pytest.mark.slow  # compiles every kernel of the runs above for a second target
def test_generic_cpu_target_within_the_documented_tolerance(tmp_path):
    code = (f"import sys, numpy as np; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_fresh_machine as t; "
            f"np.savez({str(tmp_path / 'generic.npz')!r}, **t._entry_outputs())")
    _run(code, _fresh_env(tmp_path, NUMBA_CPU_NAME="generic", NUMBA_CPU_FEATURES=""))
    host = _entry_outputs()
    generic = np.load(tmp_path / "generic.npz")
    assert set(generic) == set(host)
    differ = 0
    for key, a in host.items():
        entry, var = key.split("|")
        tol = GF_SEM_RTOL if entry == "dmft.solve gf" and var.endswith("_sem") else CROSS_TARGET_RTOL[entry]
        scale = np.max(np.abs(a), initial=0.0)
        assert np.max(np.abs(generic[key] - a), initial=0.0) <= tol * scale, key
        differ += not np.array_equal(generic[key], a)
    assert differ > 0  # the generic build ran other code (x86-64 hosts: no FMA, no AVX)
