"""How the tests are organised (docs/testing.md): every test is of one kind,

- ``unit``: one function, kernel or class against a direct reference (numpy on the same
  random draws, quadrature, finite differences, a closed form of that function), input
  checks, output layout, reproducibility, invariants;
- ``validation``: a solver or simulator run against an independent number from another
  method -- theory against simulation, a closed-form solution of the dynamics, a limit
  computed by another solver, a coincidence the theory predicts (``dmft.testing.assert_agree``);
- ``integration``: the library as a user meets it -- command lines, documented examples,
  notebooks, packaging, sweeps on disk and on dask, resources, the shape of the code.

A test carries its kind as a mark (``@pytest.mark.validation``) or takes its file's kind
from :data:`FILE_KIND`. Select with ``-m``, e.g. ``pytest -m "validation and not slow"``
(a ``-m`` on the command line replaces the default ``-m "not slow"``).
"""
import pytest

KINDS = ("unit", "validation", "integration")

#: the kind of the tests of each file that carry no kind of their own
FILE_KIND = {
    "test_anisotropic.py": "validation",
    "test_api_docs.py": "integration",
    "test_architecture.py": "integration",
    "test_assert_agree.py": "unit",
    "test_bad_input_catalogue.py": "unit",
    "test_cli.py": "integration",
    "test_compare.py": "unit",
    "test_custom_models.py": "unit",
    "test_divergence.py": "unit",
    "test_dmft_mixture.py": "validation",
    "test_dmft_schedules.py": "validation",
    "test_dmft_simulate.py": "unit",
    "test_dmft_solve.py": "unit",
    "test_dmft_step_accuracy.py": "validation",
    "test_example_notebooks.py": "integration",
    "test_examples.py": "integration",
    "test_expectation.py": "unit",
    "test_foundation.py": "unit",
    "test_kink_boundary.py": "validation",
    "test_fresh_machine.py": "integration",
    "test_long_horizon.py": "validation",
    "test_mutations.py": "validation",
    "test_normals.py": "unit",
    "test_notebook.py": "integration",
    "test_onepass.py": "unit",
    "test_onepass_cli.py": "integration",
    "test_output_times.py": "unit",
    "test_packaging.py": "integration",
    "test_parallel_kernels.py": "unit",
    "test_plotting.py": "unit",
    "test_properties.py": "unit",
    "test_reliability.py": "unit",
    "test_resources.py": "integration",
    "test_seeds_and_times.py": "unit",
    "test_schedules.py": "unit",
    "test_self_contained.py": "integration",
    "test_stats.py": "unit",
    "test_time_grids.py": "validation",
    "test_simulate_mixtures.py": "validation",
    "test_solve_threads.py": "unit",
    "test_sweep.py": "integration",
    "test_sweep_safety.py": "integration",
    "test_validation.py": "integration",
}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        own = {mark.name for mark in item.iter_markers() if mark.name in KINDS}
        if len(own) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {sorted(own)}: a test is of one kind")
        if own:
            continue
        if item.path.name not in FILE_KIND:
            raise pytest.UsageError(f"{item.path.name} has no kind: add it to FILE_KIND in tests/conftest.py "
                                    f"(one of {', '.join(KINDS)})")
        item.add_marker(FILE_KIND[item.path.name])
