"""Shared fixtures: data sets simulated once per session, and models fitted once to them.

Every fit made here goes through :func:`fit_poglm`, the one place that knows how settings reach the
estimator; tests that fit on their own can use it too, through the ``fit_poglm`` fixture.
"""

from __future__ import annotations

import pytest

import spikeglm as sg


def fit_poglm(counts: sg.SpikeCounts, **settings) -> sg.POGLM:
    """A :class:`~spikeglm.POGLM` with ``settings`` (``n_hidden``, ``epochs``, ``seed``...), fitted to
    ``counts``."""
    return sg.POGLM(**settings).fit(counts)


@pytest.fixture(name="fit_poglm", scope="session")
def _fit_poglm():
    """:func:`fit_poglm`, for tests that fit a model of their own."""
    return fit_poglm


@pytest.fixture(scope="session")
def diffpoglm_with_hidden() -> tuple:
    """The published benchmark's data set 0: ``truth, train, test, hidden_train, hidden_test``.

    3 visible and 2 hidden neurons, 40 training and 20 test trials of 100 bins, sigmoid link
    (:func:`spikeglm.synthetic.network`). Shared: treat it as read-only.
    """
    return sg.synthetic.network(protocol="diffpoglm", seed=0, with_hidden=True)


@pytest.fixture(scope="session")
def diffpoglm(diffpoglm_with_hidden) -> tuple:
    """``truth, train, test`` of :func:`diffpoglm_with_hidden` (the same simulation)."""
    return diffpoglm_with_hidden[:3]


@pytest.fixture(scope="session")
def diffpoglm_fitted(diffpoglm) -> sg.POGLM:
    """A POGLM with 2 hidden neurons and the true (sigmoid) link, fitted for 30 epochs to ``diffpoglm``'s
    training trials. Shared: save, score or plot it, but do not refit or change it."""
    _, train, _ = diffpoglm
    return fit_poglm(train, n_hidden=2, link="sigmoid", epochs=30, seed=0)
