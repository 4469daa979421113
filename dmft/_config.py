"""Thresholds and numba flags shared by every solver and simulator of both packages.

One definition per number: a module that needs one imports it from here and keeps no copy
(``tests/test_architecture.py`` checks that the literal values appear nowhere else). The
public limits that users compare with (:data:`dmft.errors.STEP_BIAS_LIMIT`) are re-exported
by :mod:`dmft.errors`.
"""
from __future__ import annotations

import contextvars

#: a run whose state (``tr q``, ``C(t, t)``, the ODE's moments, the risk) is not finite or
#: leaves ``[-BLOWUP_NORM, BLOWUP_NORM]`` has diverged
BLOWUP_NORM = 1e12
#: a model is blamed for a non-finite gradient only at fields up to this size (where every
#: built-in loss is finite); beyond it the run has already run away
MODERATE_FIELD = 1e3
#: a step error above this fraction of an output (test loss, risk, ``tr norm``) is refused
STEP_BIAS_LIMIT = 0.1
#: numba's fastmath flags for every compiled kernel that sums: re-association and contraction
#: let LLVM vectorise long sums (the results stay deterministic on one CPU target). No
#: finite-math assumptions, so a diverging run still shows up as inf/nan inside a kernel. A
#: sorted tuple, not a set: its repr goes into the generated kernels' cache key, and a set's
#: order follows the per-process hash seed.
FASTMATH = ("contract", "reassoc")
#: the kernels of a model's own functions (loss, gradient, Hessian; inlined into the kernels
#: that call them) are compiled without fastmath, so a user's function means what it says
MODEL_FASTMATH = False
#: run the DMFT solver's replicas on numba's threads (``numba.set_num_threads``); the numbers
#: are the same bit for bit. Off by default: on a loaded machine the per-step parallel regions
#: made solves slower (docs/performance.md, "Long horizons")
PARALLEL = False
#: relative variance added to every new Gaussian entry of the DMFT's field: keeps the
#: incremental Cholesky factor of a (near-)singular kernel stable (docs/dmft_theory.md,
#: "Gaussian field")
CHOL_JITTER = 1e-10
#: the dense drivers' tangent recursion takes a replica's tangent paths this many (divided by
#: the number of student units k) at a time, so that its accumulator stays in a core's cache:
#: unchunked, 8192 paths' is tens of MB, streamed through memory once per four rows
#: (docs/performance.md, "Dense tangents and the kink pair")
TANGENT_CHUNK_PATHS = 256
#: run a solve's companion (the kink extrapolation's second width) on a second thread; the
#: numbers are the same bit for bit
COMPANION_THREAD = True
#: integrate a DMFT solve's replicas in this many parts, each on its own thread (the kernels
#: release the GIL; the replicas are independent until their statistics are combined), with
#: the numbers of one thread bit for bit. A solve takes ``min(SOLVE_THREADS, os.cpu_count(),
#: n_replicas)`` parts, and one beside a kink companion (which has the second core); 1: one
#: thread (docs/performance.md, "Replicas on two threads")
SOLVE_THREADS = 2
#: the same for the solves of this context only (None: ``SOLVE_THREADS``); :func:`dmft.sweep`'s
#: dask workers set 1, as the cluster already runs a point per core
SOLVE_THREADS_HERE = contextvars.ContextVar("SOLVE_THREADS_HERE", default=None)
