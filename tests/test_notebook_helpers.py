"""The notebooks' shared setup and evaluation (utilis.notebook), and the figures every model notebook draws."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from generate_dataset import DATASETS
from utilis import notebook  # its test_set is called as notebook.test_set: pytest would collect the bare name
from utilis.metrics import fresh_seed, score
from utilis.notebook import N_TEST, N_X, SEED, TEST_SEED, evaluate, scalar_datasets, setup
from utilis.plotting import plot_samples_beside_truth, plot_training_curve
from utilis.training import History


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def datasets():
    return scalar_datasets()


def test_the_datasets_are_the_leaderboards_at_900_points(datasets):
    assert [d.name for d in datasets] == ["linear", "sinusoid", "camera"]
    for data in datasets:
        again = DATASETS[data.name](n_samples=round(900 / 0.9), seed=SEED)  # as benchmarks/leaderboard.py draws it
        assert len(data.x_train) == 900
        np.testing.assert_array_equal(data.x_train, again.x_train)
        np.testing.assert_array_equal(data.y_train, again.y_train)


def test_fresh_seed():
    assert fresh_seed(0) == TEST_SEED == 10_000 and fresh_seed(np.int64(7)) == 10_007
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            fresh_seed(bad)


def test_every_notebook_scores_on_the_same_fresh_points(datasets):
    linear = datasets[0]
    x, y = notebook.test_set(linear)
    assert x.shape == y.shape == (N_TEST,)
    assert not np.isin(x, linear.x_train).any()  # fresh: none of the training points
    again_x, again_y = notebook.test_set(linear)
    np.testing.assert_array_equal(x, again_x)
    np.testing.assert_array_equal(y, again_y)
    scores = evaluate({"truth": linear.truth}, linear)
    assert list(scores) == ["linear, truth"]
    truth_scores = scores["linear, truth"]
    assert truth_scores["gap"] == 0.0
    # the floor is the truth's NLL on exactly the test set's points
    np.testing.assert_allclose(truth_scores["Bayes floor"], -np.mean(linear.truth.log_prob(y, x)), rtol=1e-12)
    assert truth_scores == score(linear.truth, linear, n_points=N_TEST, n_x=N_X, seed=TEST_SEED)


def test_setup_sets_the_print_precision():
    setup()
    assert np.get_printoptions()["precision"] == 4


def test_samples_beside_truth(datasets):
    sinusoid = datasets[1]
    axes = plot_samples_beside_truth(sinusoid.truth, sinusoid, label="again", n_x=300, seed=1)
    assert len(axes) == 2 and axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    for ax in axes:
        data_points, samples = ax.collections
        assert len(data_points.get_offsets()) == len(sinusoid.x_train) and len(samples.get_offsets()) == 300
        # the samples are drawn at training inputs, inside the data's range
        assert np.isin(samples.get_offsets()[:, 0], sinusoid.x_train).all()
    assert "samples from the again" in axes[1].get_title()
    # one legend, below the panels, where it covers no points
    (legend,) = axes[0].figure.legends
    assert not any(ax.get_legend() for ax in axes)
    assert [t.get_text() for t in legend.get_texts()] == [
        "training data", "one y ~ truth p(y | x) per x", "one y ~ again p(y | x) per x"]  # fmt: skip
    axes[0].figure.canvas.draw()
    legend_box, panel_box = legend.get_window_extent(), axes[0].get_window_extent()
    assert legend_box.y1 < panel_box.y0
    with pytest.raises(ValueError, match="n_x"):
        plot_samples_beside_truth(sinusoid.truth, sinusoid, n_x=0)
    arm = DATASETS["robot_arm"](n_samples=200, seed=0)
    with pytest.raises(ValueError, match="scalar"):
        plot_samples_beside_truth(arm.truth, arm)


def test_training_curve():
    history = History(train_loss=[3.0, 2.0, 1.5, 1.4], val_loss=[3.1, 2.2, 1.6, 1.7], best_epoch=2)
    ax = plot_training_curve(history, title="a fit")
    train, val, kept = ax.get_lines()
    np.testing.assert_array_equal(train.get_ydata(), history.train_loss)
    np.testing.assert_array_equal(val.get_ydata(), history.val_loss)
    assert list(kept.get_xdata()) == [2, 2] and "epoch 2" in kept.get_label()
    assert ax.get_title() == "a fit" and ax.get_xlabel() == "epoch"


def test_fit_all_fits_in_workers_as_in_this_process(datasets):
    """Fits in joblib's workers give the same weights as here: the same log-densities to the last bit."""
    from utilis.baselines import GaussianRegression
    from utilis.mdn_utilis import MDN

    linear = datasets[0]

    def recipe(build):
        def fit():
            model = build()
            model.fit(linear.x_train, linear.y_train, seed=SEED, progress=False, epochs=3)
            return model

        return fit

    recipes = {"MDN": recipe(lambda: MDN(n_components=2)), ("MSE", 1): recipe(GaussianRegression)}
    models, seconds = notebook.fit_all(recipes, n_jobs=2)
    here, _ = notebook.fit_all(recipes, n_jobs=1)
    assert list(models) == list(seconds) == list(recipes)
    assert all(0 < s < 60 for s in seconds.values())
    y, x = np.linspace(-3, 3, 7), np.full(7, 0.2)
    for key in recipes:
        assert bool(models[key].fitted)
        np.testing.assert_array_equal(models[key].log_prob(y, x), here[key].log_prob(y, x))
    assert notebook.fit_all({}) == ({}, {})


def test_fit_all_refuses_what_it_cannot_run():
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_jobs must be an integer >= 1, or -1"):
            notebook.fit_all({"a": lambda: None}, n_jobs=bad)
    with pytest.raises(ValueError, match=r"recipes\['a'\] must be a function of no arguments"):
        notebook.fit_all({"a": 3})
    with pytest.raises(ZeroDivisionError):  # a recipe's error reaches the caller
        notebook.fit_all({"a": lambda: 1 / 0}, n_jobs=1)
