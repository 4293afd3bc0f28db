"""The dead-channel detector: input channels that are exactly zero, batch after batch."""

import pytest
import torch
from torch import nn

from tui_quantreport.engine import Evaluator, Session, Settings, Status, evaluate
from tui_quantreport.engine.detectors.dead_channels import ZeroCalls
from tui_quantreport.engine.stats import selection

DEAD = "dead_channel_detector"


def _model() -> nn.Module:
    """Linear(4 -> 6), ReLU, Linear(6 -> 2): hidden channel 1 always dies, channels 0 and 4 (both relu(x0)) when x[:, 0] < 0."""
    first = nn.Linear(4, 6)
    with torch.no_grad():
        first.weight.copy_(torch.eye(6, 4))
        first.weight[4] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        first.bias.copy_(torch.tensor([0.0, -100.0, 0.0, 0.0, 0.0, 0.5]))
    return nn.Sequential(first, nn.ReLU(), nn.Linear(6, 2)).eval()


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 4, generator=gen) for _ in range(4)]
    batches[3][:, 0] = -batches[3][:, 0].abs()  # in the last batch channels 0 and 4 (relu(x0)) are all zeros
    return batches


def _report(settings: Settings, device_path: bool = False, monkeypatch=None):
    if device_path:
        monkeypatch.setattr(selection, "on_host", lambda x: False)
    session = Session(_model())
    stats = session.calibrate(_batches(), settings)
    return session, stats, evaluate(session.catalog, stats, settings)


@pytest.mark.parametrize("device_path", [False, True])
def test_a_channel_zero_in_every_batch_is_dead(device_path, monkeypatch):
    _, _, report = _report(Settings.build(["dead"]), device_path, monkeypatch)
    findings = report.detectors[DEAD].findings
    assert set(findings) == {"0", "2"}  # the layers with input channels
    assert findings["0"].status is Status.OK  # the model's input has no dead channel
    finding = findings["2"]
    assert finding.status is Status.RECOMMEND
    assert finding.values["zero_batches"] == [1, 4, 0, 0, 1, 0]
    assert finding.values["dead_channels"] == [False, True, False, False, False, False]
    assert finding.headline == "1 dead input channel"
    assert "Input channel 1 of Linear '2' was exactly zero in every batch" in finding.reason
    assert report.recommended_modules() == ["2"]


def test_the_fraction_of_batches_is_a_threshold_applied_without_calibrating_again():
    session, stats, _ = _report(Settings.build(["dead"]))
    loose = Settings.build(["dead"], {"dead": {"zero_batch_fraction": 0.25}})
    finding = Evaluator(session.catalog).evaluate(stats, loose).detectors[DEAD].findings["2"]
    assert finding.values["dead_channels"] == [True, True, False, False, True, False]
    assert "at least 25% of the 4 batches" in finding.reason
    assert evaluate(session.catalog, stats, loose).stale_params == ()


def test_zero_counts_merge_exactly():
    session = Session(_model())
    settings = Settings.build(["dead"])
    batches = _batches()
    whole = session.calibrate(batches, settings).point("2", "pre").get(ZeroCalls())
    merged = (
        (session.calibrate(batches[:3], settings).merge(session.calibrate(batches[3:], settings)))
        .point("2", "pre")
        .get(ZeroCalls())
    )
    assert torch.equal(whole.zero_calls, merged.zero_calls)
    assert whole.zero_calls.tolist() == [1, 4, 0, 0, 1, 0]


def test_not_calibrated_for_it_asks_for_a_new_calibration():
    session = Session(_model())
    stats = session.calibrate(_batches(), Settings.build(["equalization"]))
    report = evaluate(session.catalog, stats, Settings.build(["dead"]))
    finding = report.detectors[DEAD].findings["2"]
    assert finding.status is Status.NOT_APPLICABLE and "calibrate again" in finding.reason
    assert report.stale_params == (DEAD,)


def test_the_command_line_takes_its_short_names(capsys):
    import json

    from tui_quantreport.cli import main

    assert (
        main(
            ["report", "showcase", "--format", "json", "--detectors", "dead", "--param", "dead.zero_batch_fraction=0.5"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert list(data["detectors"]) == [DEAD]
    assert data["detectors"][DEAD]["params"] == {"zero_batch_fraction": 0.5}


def test_on_the_showcase_the_flag_and_the_badge_agree():
    from tui_quantreport.engine import load_model, open_batches

    loaded = load_model("showcase")
    session = Session(loaded.model)
    settings = Settings.build()
    report = evaluate(session.catalog, session.calibrate(open_batches(loaded), settings), settings)
    findings = report.detectors[DEAD].findings
    assert any(f.recommended for f in findings.values())
    for fqn, finding in findings.items():
        if finding.status in (Status.RECOMMEND, Status.OK):
            assert any(finding.values["dead_channels"]) == finding.recommended, fqn
