"""The evaluator: re-judging from kept measurements, a bounded cache owned by its holder, nothing global."""

import torch
from torch import nn

from tui_quantreport.engine import Evaluator, Session, Settings, evaluate
from tui_quantreport.engine.detectors.outlier import OutlierDetector


def _calibrated(batches=3):
    torch.manual_seed(0)
    session = Session(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval())
    settings = Settings.build()
    return session, settings, session.calibrate([torch.randn(6, 4) for _ in range(batches)], settings)


def _count_measures(monkeypatch) -> list[str]:
    measured: list[str] = []
    real = OutlierDetector.measure

    def spy(self, ctx, fqn, params):
        measured.append(fqn)
        return real(self, ctx, fqn, params)

    monkeypatch.setattr(OutlierDetector, "measure", spy)
    return measured


def test_a_threshold_change_rejudges_from_kept_measurements(monkeypatch):
    session, settings, stats = _calibrated()
    measured = _count_measures(monkeypatch)
    evaluator = Evaluator(session.catalog)
    first = evaluator.evaluate(stats, settings)
    leaves = len(first.detectors["outlier_detector"].findings)
    assert len(measured) == leaves
    strict = evaluator.evaluate(stats, settings.with_param("outlier", "ratio_threshold", 1.0))
    assert len(measured) == leaves  # judged again, not measured again
    assert strict.detectors["outlier_detector"].params["ratio_threshold"] == 1.0
    # The same parameters give back the same report; an observed parameter measures again.
    assert evaluator.evaluate(stats, settings).detectors["outlier_detector"] is first.detectors["outlier_detector"]
    evaluator.evaluate(stats, settings.with_param("outlier", "reference_percentile", 0.9))
    assert len(measured) == 2 * leaves


def test_nothing_is_kept_outside_an_evaluator(monkeypatch):
    session, settings, stats = _calibrated()
    measured = _count_measures(monkeypatch)
    Evaluator(session.catalog).evaluate(stats, settings)
    Evaluator(session.catalog).evaluate(stats, settings)
    evaluate(session.catalog, stats, settings)
    assert len(measured) == 3 * len(set(measured))


def test_the_cache_is_bounded():
    session, settings, _ = _calibrated()
    evaluator = Evaluator(session.catalog, snapshots=2, reports=3)
    snapshots = [_calibrated(batches=n)[2] for n in (1, 2, 3)]
    for stats in snapshots:
        for threshold in (2.0, 3.0, 4.0, 5.0, 6.0):
            evaluator.evaluate(stats, settings.with_param("outlier", "ratio_threshold", threshold))
    kept = evaluator.kept()
    assert kept["snapshots"] == 2
    assert kept["reports"] == 2 * 3
    # Each enabled detector's measurements once per kept snapshot (the threshold is not observed).
    assert kept["measurements"] == 2 * len(settings.enabled)
