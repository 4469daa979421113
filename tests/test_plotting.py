"""Figures: labels from the variables' attrs (mathtext that renders), log axes, one colour and one
legend entry per value of a swept dimension, titles from attrs, and matplotlib's global
rcParams left as they were. Built on hand-made Datasets (no computation)."""
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from dmft import errors, output, plotting

T = np.linspace(0.0, 2.0, 6)
SOURCES = ["theory", "simulation"]


def _compare_dataset(time_axis: str, dynamics=("sgd", "sme", "gf")) -> "xr.Dataset":
    """A dmft.compare-shaped Dataset (dynamics, source, time) built like the library's outputs."""
    shape = (len(dynamics), len(SOURCES), len(T))
    curve = np.broadcast_to(np.exp(-T), shape) + np.arange(len(dynamics))[:, None, None] * 0.1
    ds = output.build({"test_loss": (("dynamics", "source", "time"), curve),
                       "test_loss_sem": (("dynamics", "source", "time"), np.full(shape, 0.01)),
                       "train_loss": (("dynamics", "source", "time"), curve / 2)},
                      {"dynamics": list(dynamics), "source": SOURCES, "time": T},
                      {"model": "huber_tanh", "delta": 2.0, "lr": 2.0, "batch": 1.0, "ridge": 0.0, "d": 400,
                       "n_seeds": 8},
                      time_axis=time_axis)
    return ds


def _sweep_dataset(lrs=(0.5, 1.0, 2.0), batches=(1.0, 2.0, 4.0, 8.0)):
    """A dmft.sweep-shaped Dataset: swept lr x batch in front of (dynamics, source, time)."""
    base = _compare_dataset("multipass", dynamics=("sgd", "gf"))
    shape = (len(lrs), len(batches)) + base.test_loss.shape
    values = np.broadcast_to(base.test_loss.values, shape) * np.asarray(lrs)[:, None, None, None, None]
    ds = base.drop_vars(["test_loss", "test_loss_sem", "train_loss"]).assign(
        test_loss=(("lr", "batch", "dynamics", "source", "time"), values, dict(base.test_loss.attrs)),
        test_loss_sem=(("lr", "batch", "dynamics", "source", "time"), np.full(shape, 0.01)),
        status=(("lr", "batch"), np.full((len(lrs), len(batches)), "ok")))
    ds = ds.assign_coords(lr=("lr", list(lrs), {"long_name": "lr", "units": "1"}),
                          batch=("batch", list(batches), {"long_name": "batch", "units": "1"}))
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in ("lr", "batch")}
    return ds


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_every_registered_label_is_mathtext_that_renders():
    # a label with a mathtext error raises when drawn: draw each once
    fig = plt.figure()
    labels = [*output.LABELS.values(), *(axis["label"] for axis in output.TIME_AXES.values())]
    for i, label in enumerate(labels):
        fig.text(0.0, i / len(labels), label)
    fig.canvas.draw()
    assert len(labels) > 20


def test_labels_come_from_the_attrs():
    ds = _compare_dataset("multipass")
    fig = plotting.compare(ds, ["test_loss", "train_loss"])
    a0, a1 = fig.axes[:2]
    assert a0.get_ylabel() == output.LABELS["test_loss"] == ds.test_loss.attrs["label"]
    assert a1.get_ylabel() == output.LABELS["train_loss"]
    assert a0.get_xlabel() == output.TIME_AXES["multipass"]["label"]
    # a label the user sets on the variable wins; without one: long_name [units]
    ds.test_loss.attrs["label"] = r"my loss $\ell$"
    del ds.train_loss.attrs["label"]
    ds.train_loss.attrs["units"] = "nats"
    fig = plotting.compare(ds, ["test_loss", "train_loss"])
    assert fig.axes[0].get_ylabel() == r"my loss $\ell$"
    assert fig.axes[1].get_ylabel() == ds.train_loss.attrs["long_name"] + " [nats]"


def test_each_package_labels_its_own_time_axis():
    assert plotting.compare(_compare_dataset("onepass"), ["test_loss"]).axes[0].get_xlabel() == \
        r"time $t$ (steps$\,/\,d$)"
    assert plotting.compare(_compare_dataset("multipass"), ["test_loss"]).axes[0].get_xlabel() == \
        r"time $t$ (epochs$\,/\,\bar\kappa$)"


def test_title_from_attrs():
    ds = _compare_dataset("multipass")
    ds.attrs["data"] = "None"  # what dmft.compare stores for the default data: no "on None"
    fig = plotting.compare(ds)
    text = fig._suptitle.get_text()
    assert text == r"huber_tanh: $\delta = 2$, $\bar\eta = 2$, $\bar\kappa = 1$, $d = 400$, 8 seeds"
    assert "batch=" not in text and "ridge" not in text  # zero ridge left out
    # one-pass: the learning rate is gamma, a schedule shows by name
    ds = _compare_dataset("onepass")
    ds.attrs.update(lr="AdaGradNorm(lr=0.5, b0=1.0)", data="teacher_student")
    for key in ("delta", "batch"):
        del ds.attrs[key]
    assert plotting.figure_title(ds) == (r"huber_tanh on teacher_student: $\gamma_t$: AdaGradNorm(lr=0.5, b0=1.0), "
                                         r"$d = 400$, 8 seeds")
    ds.attrs["lr"] = "Constant(lr=0.25)"  # what onepass stores for lr=0.25
    assert r"$\gamma = 0.25$" in plotting.figure_title(ds)


def test_log_axes_are_applied_and_leave_out_t_0():
    fig = plotting.compare(_compare_dataset("multipass"), ["test_loss"], xscale="log", yscale="log")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    for line in ax.lines:
        assert np.all(line.get_xdata() > 0) and len(line.get_xdata()) == len(T) - 1
    fig = plotting.theory_vs_simulation(_compare_dataset("multipass").sel(dynamics="gf", source="theory"),
                                        variables=("test_loss",), xscale="log")
    assert fig.axes[0].get_xscale() == "log"
    fig = plotting.sweep(_sweep_dataset(), xscale="log")
    assert all(a.get_xscale() == "log" for a in fig.axes)


@pytest.mark.parametrize("call", [
    lambda: plotting.compare(_compare_dataset("multipass"), xscale="logarithmic"),
    lambda: plotting.sweep(_sweep_dataset(), yscale="ln"),
    lambda: plotting.sweep(_sweep_dataset(), x="dynamics"),
    lambda: plotting.sweep(_sweep_dataset(), hue="lr"),  # hue = x
    lambda: plotting.sweep(_sweep_dataset(), hue=[]),  # batch has 4 values and is neither x nor hue
    lambda: plotting.sweep(_sweep_dataset(), "risk"),
    lambda: plotting.compare(_compare_dataset("multipass"), ["test_loss", "train_loss"], ax=plt.subplots()[1]),
])
def test_bad_plot_arguments_are_refused(call):
    with pytest.raises(errors.ParameterError, match="is not allowed|neither x nor hue"):
        call()


def _curves(ax):
    """The data lines of an axes (without error-bar caps)."""
    return [line for line in ax.lines if line.get_marker() not in ("_", "|")]


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_compare_legend_has_one_entry_per_dynamics_and_per_source():
    fig = plotting.compare(_compare_dataset("multipass"), ["test_loss"])
    assert _legend_texts(fig.axes[0]) == ["SGD", "SME", "GF", "theory (DMFT)", "simulation, $d = 400$"]
    # one colour per dynamics among the drawn lines
    assert len({to_hex(line.get_color()) for line in fig.axes[0].lines}) == 3


def test_sweep_has_one_colour_and_one_legend_entry_per_swept_value():
    lrs, batches = (0.5, 1.0, 2.0), (1.0, 2.0, 4.0, 8.0)
    ds = _sweep_dataset(lrs, batches)
    fig = plotting.sweep(ds)  # x = lr, hue = batch, one panel per dynamics
    assert [a.get_title() for a in fig.axes] == ["SGD", "GF"]
    for ax in fig.axes:
        assert len(_curves(ax)) == len(batches) * len(SOURCES)
        assert len({to_hex(line.get_color()) for line in _curves(ax)}) == len(batches)
        assert ax.get_xlabel() == r"learning rate $\bar\eta$"
    texts = _legend_texts(fig.axes[-1])
    assert texts[:len(batches)] == [rf"$\bar\kappa = {b:g}$" for b in batches]
    assert len(texts) == len(batches) + len(SOURCES)
    assert fig._suptitle.get_text() == r"huber_tanh: $\delta = 2$, $d = 400$, 8 seeds; at $t = 2$"
    # the final value of each curve is the Dataset's: theory, SGD, batch 8, against lr
    np.testing.assert_array_equal(_curves(fig.axes[0])[2 * 3].get_ydata(),
                                  ds.test_loss.sel(dynamics="sgd", source="theory", batch=8.0).isel(time=-1))
    # two swept dims as hue: one entry per combination
    fig = plotting.sweep(ds, x="batch", hue=["lr"], col=None, time=0)
    assert len([t for t in _legend_texts(fig.axes[0]) if "eta" in t]) == len(lrs)


def test_plotting_leaves_the_global_rcparams_alone():
    before = dict(matplotlib.rcParams)
    fig1 = plotting.compare(_compare_dataset("multipass"))
    fig2 = plotting.sweep(_sweep_dataset())
    fig3 = plotting.theory_vs_simulation(_compare_dataset("onepass").sel(dynamics="sgd", source="theory"),
                                         variables=("test_loss",), style={"axes.labelsize": 13.0})
    assert dict(matplotlib.rcParams) == before
    # ... while the figures were drawn in the module's style (and a style= override)
    assert fig1.axes[0].yaxis.label.get_fontsize() == plotting.STYLE["axes.labelsize"] != before["axes.labelsize"]
    assert not fig2.axes[0].spines["top"].get_visible() and before["axes.spines.top"]
    assert fig3.axes[0].yaxis.label.get_fontsize() == 13.0


def test_settings_made_while_drawing_are_kept():
    # Jupyter's inline backend switches interactive mode on when the first figure loads it,
    # i.e. inside paper_style: restoring every rcParam on exit would undo it and hide the
    # session's later figures (tests/test_example_notebooks.py draws two in one notebook)
    before = matplotlib.is_interactive()
    try:
        with plotting.paper_style():
            matplotlib.interactive(not before)
        assert matplotlib.is_interactive() == (not before)
    finally:
        matplotlib.interactive(before)
