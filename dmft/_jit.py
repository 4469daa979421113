"""Disk-cached numba specialisations of kernels that call model functions.

numba cannot cache a kernel that takes jitted functions as *arguments*: it recompiles in
every process (compile times: docs/performance.md, "Compilation"). It can cache one that
refers to them as *globals*. :func:`specialise` therefore writes, once per (kernel, model
functions), a small module that imports the model's functions under fixed names and holds
the kernel's source, and compiles it with ``cache=True``. Functions that cannot be imported by name
(a custom model's functions defined in ``__main__`` or a notebook) get an uncached
specialisation instead; :func:`dmft.models.custom` generates cached module-level wrappers
for user functions that live in an importable module (:func:`load_module`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import textwrap
import threading
from pathlib import Path

from numba import njit

from ._config import FASTMATH

_LOADED: dict = {}
_LOCK = threading.RLock()  # threads (onepass.simulate's seeds) share _LOADED and the files


def cache_dir() -> Path:
    """``$SGD_DYNAMICS_CACHE`` or ``~/.cache/sgd-dynamics/kernels``."""
    root = os.environ.get("SGD_DYNAMICS_CACHE") or Path.home() / ".cache" / "sgd-dynamics" / "kernels"
    return Path(root)


def _importable(fn):
    py = getattr(fn, "py_func", None)
    # a script's own functions (``__main__``) or exec'd code are not importable elsewhere
    if py is None or "<locals>" in py.__qualname__ or py.__module__ in (None, "__main__"):
        return None
    try:
        if getattr(importlib.import_module(py.__module__), py.__name__) is fn:
            return py.__module__, py.__name__
    except ImportError:
        return None
    return None


def _template_source(template) -> str:
    src = textwrap.dedent(inspect.getsource(template))
    return "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("@"))


def specialise(template, /, *, error_model="python", parallel=False, **functions):
    """``njit`` version of ``template`` whose global names ``functions`` are bound.

    ``template`` is a plain module-level Python function using only ``math``, ``np`` and
    the names in ``functions``: numba dispatchers, or integers, which numba compiles in as
    constants (a loop over ``range(K)`` with ``K = 1`` then costs nothing). Same inputs ->
    the same compiled kernel, from the disk cache after the first process.
    ``error_model="numpy"`` drops numba's ZeroDivisionError checks, which stop LLVM from
    vectorising a loop with a division (e.g. one that inlines
    :func:`dmft._kernels_normal.normal_pair`). Kernels release the GIL (``nogil``).
    ``parallel=True`` compiles the template's ``prange`` loops for numba's threads
    (``numba.set_num_threads``); otherwise ``prange`` is a plain ``range``.
    """
    with _LOCK:
        return _specialise(template, error_model, bool(parallel), functions)


def _specialise(template, error_model, parallel, functions):
    consts = {n: v for n, v in functions.items() if isinstance(v, int)}
    names = sorted(n for n in functions if n not in consts)
    fast_key = (template, error_model, parallel, tuple((n, id(functions[n])) for n in names),
                tuple(sorted(consts.items())))
    if fast_key in _LOADED:
        return _LOADED[fast_key]
    origins = [_importable(functions[n]) for n in names]
    if any(o is None for o in origins):
        glb = {**template.__globals__, **functions}
        ns: dict = {}
        exec(compile(_template_source(template), f"<specialised {template.__name__}>", "exec"), glb, ns)
        _LOADED[fast_key] = njit(cache=False, nogil=True, fastmath=set(FASTMATH), error_model=error_model,
                                 parallel=parallel)(ns[template.__name__])
        return _LOADED[fast_key]
    body = _template_source(template)
    # module-level jitted helpers the template calls (e.g. an interpolation routine)
    helpers = {n: _importable(template.__globals__[n]) for n in template.__code__.co_names
               if n not in functions and hasattr(template.__globals__.get(n), "py_func")}
    helpers = {n: o for n, o in helpers.items() if o is not None}
    # whole modules of the bound functions and helpers: numba does not notice when a
    # function they call (or inline) changes
    modules = sorted({functions[n].py_func.__module__ for n in names}
                     | {template.__globals__[n].py_func.__module__ for n in helpers})
    dep_src = "".join(inspect.getsource(sys.modules[m]) for m in modules)
    const_src = "".join(f"{n} = {consts[n]!r}\n" for n in sorted(consts))
    options = f"cache=True, nogil=True, fastmath=set({FASTMATH!r}), error_model={error_model!r}"
    if parallel:  # only then: serial kernels keep their cache names
        options += ", parallel=True"
    digest = hashlib.sha1((body + repr(origins) + dep_src + const_src + options).encode()).hexdigest()[:16]
    modname = f"sgd_dynamics_kernel_{template.__name__}_{digest}"
    if modname in _LOADED:
        _LOADED[fast_key] = _LOADED[modname]
        return _LOADED[modname]
    imports = "\n".join(f"from {m} import {a} as {n}"
                        for n, (m, a) in [*zip(names, origins), *sorted(helpers.items())])
    code = (f"# generated by dmft._jit from {template.__module__}.{template.__name__}; do not edit\n"
            f"import math\nimport numpy as np\nfrom numba import njit{', prange' if 'prange' in body else ''}\n{imports}\n{const_src}\n\n{body}\n\n\n"
            f"kernel = njit({options})({template.__name__})\n")
    module = load_module(modname, code)
    _LOADED[modname] = _LOADED[fast_key] = module.kernel
    return module.kernel


def load_module(modname: str, code: str):
    """The module ``modname`` of the kernel cache folder, written from ``code`` first if it
    is not there (atomically: parallel workers never see a half-written file), imported
    under its name (so that generated code elsewhere can import from it)."""
    if modname in sys.modules:
        return sys.modules[modname]
    folder = cache_dir()
    path = folder / f"{modname}.py"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(code)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module
