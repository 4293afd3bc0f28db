"""The detector registry is built from the detectors' declarations, and each module gets one verdict."""

import pkgutil
from pathlib import Path

import pytest

from sample_models import SAMPLES
from tui_quantreport.cli import build_parsers
from tui_quantreport.engine import ParamError, Session, Settings, Status, evaluate, load_model, open_batches
from tui_quantreport.engine import detectors as detectors_package
from tui_quantreport.engine.detectors import ALIASES, DETECTORS, Detector, resolve_detector, short_names
from tui_quantreport.engine.export import to_json_data

README = Path(__file__).parent.parent / "README.md"


def test_every_detector_file_contributes_one_registered_detector():
    files = {m.name for m in pkgutil.iter_modules(detectors_package.__path__)} - {"base"}
    registered = {cls.__module__.rpartition(".")[2] for cls in DETECTORS.values()}
    assert registered == files
    assert len(DETECTORS) == len(files)


def test_names_aliases_and_glyphs_are_unique():
    glyphs = [cls.glyph for cls in DETECTORS.values()]
    assert all(len(g) == 1 for g in glyphs)
    assert len(set(glyphs)) == len(glyphs)
    names = [n for cls in DETECTORS.values() for n in {cls.name, *cls.aliases}]
    assert len(set(names)) == len(names)
    orders = [cls.order for cls in DETECTORS.values()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


@pytest.mark.parametrize("cls", list(DETECTORS.values()), ids=list(DETECTORS))
def test_each_detector_declares_what_the_front_ends_read(cls: type[Detector]):
    assert cls.name.endswith("_detector") and cls.title and cls.description and cls.aliases
    assert cls.report_keys and len(set(cls.report_keys)) == len(cls.report_keys)
    assert set(cls.module_param_keys) <= set(cls.report_keys) & {p.name for p in cls.params}
    # Each report key is also a class constant, so code and tests spell it once.
    constants = {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}
    assert set(cls.report_keys) <= constants
    for alias in (cls.name, *cls.aliases, cls.name.upper()):
        assert resolve_detector(alias) == cls.name
    assert {a for a, n in ALIASES.items() if n == cls.name} == set(cls.aliases)


def test_unknown_detector_error_lists_every_short_name():
    with pytest.raises(ParamError) as info:
        resolve_detector("bogus")
    message = str(info.value)
    assert message.startswith("unknown detector 'bogus'; choose from ")
    assert ", ".join(short_names()) in message


def test_command_line_help_lists_every_detector():
    for parser in build_parsers()[:2]:
        text = "".join(parser.format_help().split())  # argparse wraps lines, even at hyphens
        assert "comma-separated:" + ",".join(short_names()) in text


def test_readme_documents_every_detector():
    text = README.read_text()
    for cls in DETECTORS.values():
        assert f"| `{cls.name}` |" in text, cls.name


@pytest.mark.parametrize("sample", SAMPLES)
def test_badges_and_findings_agree(sample):
    """The status behind a tree badge is the status of the finding shown and exported, on every sample."""
    loaded = load_model(sample)
    session = Session(loaded.model, label=sample)
    settings = Settings.build()
    report = evaluate(session.catalog, session.calibrate(open_batches(loaded), settings), settings)
    exported = to_json_data(report)["detectors"]
    badged = set(report.recommended_modules())
    for name, det in report.detectors.items():
        cls = DETECTORS[name]
        for fqn, status in det.findings.statuses.items():
            finding = det.findings[fqn]
            assert finding.status is status, (name, fqn)
            assert set(finding.values) == set(cls.report_keys), (name, fqn)
            assert exported[name]["modules"][fqn]["status"] == status.value
            if status is Status.RECOMMEND:
                assert fqn in badged
        assert det.recommended == [f for f, s in det.findings.statuses.items() if s is Status.RECOMMEND]
    # Each detector's own flag says the same as its verdict.
    for fqn, finding in report.detectors["dynamic_vs_static_detector"].findings.items():
        assert finding.values["dynamic_recommended"] == finding.recommended, fqn
    for fqn, finding in report.detectors["input_weight_equalization_detector"].findings.items():
        assert finding.values["recommended"] == finding.recommended, fqn
    for fqn, finding in report.detectors["outlier_detector"].findings.items():
        assert any(finding.values["outliers_detected"]) == finding.recommended, fqn
    for fqn, finding in report.detectors["per_channel_detector"].findings.items():
        if finding.status in (Status.RECOMMEND, Status.OK):
            assert finding.values["per_channel_used"] == (not finding.recommended), fqn
