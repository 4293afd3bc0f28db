"""Stats files: round trips, merging, bad files, and distributed calibration with torchrun."""

import json
import os
from pathlib import Path

import pytest
import torch
from cli_helpers import one_line, run
from statsfile_helpers import rewrite, torchrun

from tui_quantreport.cli import main
from tui_quantreport.engine import (
    Session,
    Settings,
    evaluate,
    list_samples,
    load_model,
    open_batches,
    render,
    statsfile,
)
from tui_quantreport.engine.distributed import (
    World,
    open_shard,
    shard_batches,
    takes_rank,
)
from tui_quantreport.engine.statsfile import StatsFileError

ROOT = Path(__file__).resolve().parents[1]
TINY = str(Path(__file__).parent / "models" / "tiny.py")
SHARDED = str(Path(__file__).parent / "models" / "sharded.py")


def calibrated(spec, batches=None, settings=None):
    loaded = load_model(spec)
    session = Session(loaded.model, label=loaded.spec)
    settings = settings or Settings.build()
    data = list(open_batches(loaded)) if batches is None else batches
    return loaded, session, settings, session.calibrate(data, settings)


def assert_same_stats(a, b, exact_sums=False):
    """min/max/counts exactly, sums within float tolerance."""
    assert a.batches == b.batches and a.observed == b.observed
    assert a.points.keys() == b.points.keys() and a.weights.keys() == b.weights.keys()
    for key, p in a.points.items():
        q = b.points[key]
        assert (p.calls, p.axis, p.global_min, p.global_max) == (q.calls, q.axis, q.global_min, q.global_max), key
        assert sorted(p.shapes) == sorted(q.shapes)
        assert p.range_sum == q.range_sum if exact_sums else p.range_sum == pytest.approx(q.range_sum, rel=1e-5)
        for x, y in ((p.channel_min, q.channel_min), (p.channel_max, q.channel_max)):
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), key
        assert p.reduced.keys() == q.reduced.keys()
        for reducer, result in p.reduced.items():
            mine, meta = result.state()
            theirs, their_meta = q.reduced[reducer].state()
            assert meta == their_meta and mine.keys() == theirs.keys()
            for name, x in mine.items():
                y = theirs[name]
                if x.is_floating_point() and not exact_sums:  # sums: within float tolerance
                    torch.testing.assert_close(x, y, rtol=1e-5, atol=0)
                else:  # counts (and everything, after a round trip): exactly
                    assert torch.equal(x, y), (key, reducer, name)
    for fqn, w in a.weights.items():
        assert torch.equal(w.channel_min, b.weights[fqn].channel_min)
        assert torch.equal(w.channel_max, b.weights[fqn].channel_max)


# Round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("sample", [s.name for s in list_samples()])
def test_saved_and_opened_stats_give_the_live_report(sample, tmp_path):
    # The 2,000-module sample on two of its batches: a round trip does not depend on how many.
    batches = list(open_batches(load_model(sample)))[:2] if sample == "large_generated" else None
    loaded, session, settings, stats = calibrated(sample, batches)
    live = evaluate(session.catalog, stats, settings, spec=loaded.spec)
    path = statsfile.save(tmp_path / "run.qstats", statsfile.make(loaded.spec, session.catalog, stats, settings))
    opened = statsfile.load(path)
    assert opened.catalog == session.catalog
    assert_same_stats(opened.stats, stats, exact_sums=True)
    again = evaluate(opened.catalog, opened.stats, opened.settings, spec=opened.spec)
    for fmt in ("json", "markdown", "text"):
        assert render(again, fmt) == render(live, fmt)
    assert again.modules == live.modules


def _measured(sample):
    """A calibrated sample with its measured error: (loaded, session, settings, stats, measured, live report)."""
    from tui_quantreport.engine.quantsim import ErrorAnalysis
    from tui_quantreport.engine.quantsim.probes import take_probes
    from tui_quantreport.engine.severity import assess, measure

    loaded, session, settings, stats = calibrated(sample)
    probes = take_probes(open_batches(loaded), 4)
    measured = measure(ErrorAnalysis.from_stats(session.model, session.catalog, probes, stats, "x86"))
    live = assess(evaluate(session.catalog, stats, settings, spec=loaded.spec), measured)
    return loaded, session, settings, stats, measured, live


def test_a_measured_error_saved_with_the_stats_keeps_every_severity(tmp_path, capsys):
    from tui_quantreport.engine.severity import assess

    loaded, session, settings, stats, measured, live = _measured("showcase")
    assert live.severities and measured.modules
    path = statsfile.save(
        tmp_path / "run.qstats", statsfile.make(loaded.spec, session.catalog, stats, settings, measured)
    )
    opened = statsfile.load(path)
    assert opened.measured == measured
    again = assess(evaluate(opened.catalog, opened.stats, opened.settings, spec=opened.spec), opened.measured)
    for fmt in ("json", "markdown", "text"):
        assert render(again, fmt) == render(live, fmt)
    # The command line reads it too: gains and severities without the model, and no "not measured" note.
    code, out, err = run(capsys, "report", str(path), "--format", "json")
    assert code == 0 and "no measured SQNR" not in err
    data = json.loads(out)
    assert data["measured"]["plan"] == json.loads(render(live, "json"))["measured"]["plan"]
    # A file without a measurement (calibrate, merge) still opens unmeasured.
    plain = statsfile.save(tmp_path / "plain.qstats", statsfile.make(loaded.spec, session.catalog, stats, settings))
    assert statsfile.load(plain).measured is None


def test_a_measurement_that_is_not_numbers_is_refused(tmp_path, capsys):
    loaded, session, settings, stats, measured, _ = _measured("showcase")
    data = statsfile.encode(statsfile.make(loaded.spec, session.catalog, stats, settings, measured))

    def corrupt(header):
        module = next(iter(header["measured"]["modules"].values()))
        module["sqnr_db"]["dynamic"] = "NaN"

    bad = tmp_path / "bad.qstats"
    bad.write_bytes(rewrite(data, edit_header=corrupt))  # the checksum is recomputed: only the value is wrong
    code, out, err = run(capsys, "report", str(bad))
    one_line(code, err, str(bad), "malformed stats file (its measured error")
    assert out == ""


def test_calibrate_command_then_report_from_the_file_equals_the_live_report(tmp_path, capsys):
    target = tmp_path / "tiny.qstats"
    code, _, err = run(capsys, "calibrate", TINY, "--output", str(target), "--tolerance", "0.9")
    assert code == 0, err
    assert "calibrated 6 batches in" in err and str(target) in err
    assert "calibrating: 6/6 batches" in err  # plain lines when stderr is not a terminal
    # Measured SQNR needs the model's forward: compared without it (--probe-batches 0).
    live = run(capsys, "report", TINY, "--format", "json", "--tolerance", "0.9", "--probe-batches", "0")[1]
    from_file = run(capsys, "report", str(target), "--format", "json", "--probe-batches", "0")[1]
    assert from_file == live
    assert json.loads(from_file)["detectors"]["dynamic_vs_static_detector"]["params"]["tolerance"] == 0.9
    # Thresholds still move without the model; and --stats with the model reuses the file.
    assert (
        run(capsys, "report", str(target), "--format", "json", "--tolerance", "0.1")[1]
        == run(capsys, "report", TINY, "--format", "json", "--tolerance", "0.1", "--probe-batches", "0")[1]
    )
    assert run(capsys, "report", TINY, "--stats", str(target), "--format", "json", "--probe-batches", "0")[1] == live
    # Without the model nothing is measured (a note says so); with it, --stats still measures.
    code, out, err = run(capsys, "report", str(target), "--format", "json")
    assert code == 0 and json.loads(out) == json.loads(live) and "no measured SQNR" in err
    measured = json.loads(run(capsys, "report", TINY, "--stats", str(target), "--format", "json")[1])
    assert measured["calibration"]["batches"] == 6 and measured != json.loads(live)


def test_a_stats_file_refuses_what_needs_the_model(tmp_path, capsys):
    target = tmp_path / "tiny.qstats"
    assert run(capsys, "calibrate", TINY, "--output", str(target))[0] == 0
    one_line(*run(capsys, "report", str(target), "--batches", "2")[::2], "--batches needs the model")
    one_line(
        *run(capsys, "report", str(target), "--param", "outlier.reference_percentile=0.5")[::2],
        "outlier_detector.reference_percentile",
        "calibrate again",
    )
    one_line(*run(capsys, "report", "showcase", "--stats", str(target))[::2], "different model", "fingerprint")
    one_line(
        *run(capsys, "report", str(target), "--sensitivity")[::2],
        "--sensitivity measures the model",
        f"--stats {target}",
    )


def test_progress_bar_on_a_terminal():
    from io import StringIO

    from tui_quantreport.cli import Progress

    class Terminal(StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress("calibrating", stream)
    for done in range(1, 5):
        progress(done, 4)
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and "[##############################] 4/4 batches" in text and text.endswith("\n")


# Merging ---------------------------------------------------------------------------


def test_merging_equals_calibrating_on_the_union(tmp_path, capsys):
    loaded, session, settings, whole = calibrated(TINY)
    batches = list(open_batches(loaded))
    _, _, _, first = calibrated(TINY, batches[:2])
    _, _, _, second = calibrated(TINY, batches[2:])
    make = statsfile.make
    a = statsfile.save(tmp_path / "a.qstats", make(loaded.spec, session.catalog, first, settings))
    b = statsfile.save(tmp_path / "b.qstats", make(loaded.spec, session.catalog, second, settings))
    code, _, err = run(capsys, "merge", str(a), str(b), "--output", str(tmp_path / "c.qstats"))
    assert code == 0, err
    merged = statsfile.load(tmp_path / "c.qstats")
    assert_same_stats(merged.stats, whole)
    for fmt in ("markdown", "text"):
        assert render(evaluate(merged.catalog, merged.stats, settings, spec=loaded.spec), fmt) == render(
            evaluate(session.catalog, whole, settings, spec=loaded.spec), fmt
        )


def test_merge_refuses_other_models_and_other_plans(tmp_path, capsys):
    tiny, showcase, other_plan = (tmp_path / n for n in ("t.qstats", "s.qstats", "p.qstats"))
    assert run(capsys, "calibrate", TINY, "--output", str(tiny), "--batches", "2")[0] == 0
    assert run(capsys, "calibrate", "showcase", "--output", str(showcase), "--batches", "2")[0] == 0
    assert (
        run(
            capsys,
            "calibrate",
            TINY,
            "--output",
            str(other_plan),
            "--batches",
            "2",
            "--param",
            "outlier.reference_percentile=0.5",
        )[0]
        == 0
    )
    out = tmp_path / "out.qstats"
    one_line(*run(capsys, "merge", str(tiny), str(showcase), "--output", str(out))[::2], "different models")
    one_line(
        *run(capsys, "merge", str(tiny), str(other_plan), "--output", str(out))[::2],
        "different plan",
        "reference_percentile",
    )
    assert not out.exists()


def test_merge_keeps_per_channel_stats_when_one_side_saw_nothing():
    """A point observed only in some batches (or on some ranks) merges as if calibrated in one run."""
    from tui_quantreport.engine.stats import Accumulator, summarize

    empty = Accumulator()
    empty.update((0, 3), 1, None)  # a call that brought no values
    seen = Accumulator()
    x = torch.randn(4, 3)
    seen.update((4, 3), 1, summarize(x, 1, ()))
    merged = empty.freeze().merge(seen.freeze())
    assert merged.calls == 2 and merged.channel_min is not None and merged.axis == 1
    assert torch.equal(merged.channel_min, x.amin(0)) and merged.shapes == ((0, 3), (4, 3))
    assert seen.freeze().merge(empty.freeze()).channel_max is not None


# Bad files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "tiny.qstats"
    assert main(["calibrate", TINY, "--output", str(path), "--batches", "3"]) == 0
    return path.read_bytes()


def _flip(data, at):
    out = bytearray(data)
    out[at] ^= 0x55
    return bytes(out)


def _tamper_tensor(data):
    size = int.from_bytes(data[:8], "little")
    return _flip(data, 8 + size + 5)


BAD_FILES = {
    "empty": (lambda d: b"", "truncated"),
    "truncated header": (lambda d: d[:40], "truncated"),
    "truncated data": (lambda d: d[:-100], "truncated or corrupt"),
    "random bytes": (lambda d: os.urandom(64), ""),
    "corrupt header": (lambda d: d[:20] + b"\xff\xfe" + d[22:], "corrupt"),
    "tampered data": (_tamper_tensor, "checksum"),
    "tampered header": (lambda d: d.replace(b'\\"batches\\":3', b'\\"batches\\":9', 1), "checksum"),
    "wrong version": (
        lambda d: rewrite(d, edit_meta=lambda m: m.update(format="tui-quantreport.stats/2")),
        "'2' is not readable",
    ),
    "another format": (
        lambda d: rewrite(d, edit_meta=lambda m: m.update(format="something-else")),
        "not a tui-quantreport stats file",
    ),
    "layout disagrees": (
        lambda d: rewrite(d, edit_tensors=lambda t: t.update({"pack.float32": t["pack.float32"][:-1]})),
        "malformed",
    ),
    "unknown module": (
        lambda d: rewrite(d, edit_header=lambda h: h["stats"]["state"]["points"][0].update(fqn="nope")),
        "unknown module",
    ),
    "bad settings": (
        lambda d: rewrite(
            d, edit_header=lambda h: h["settings"]["params"]["dynamic_vs_static_detector"].update(tolerance=7)
        ),
        "tolerance",
    ),
    "catalog disagrees": (
        lambda d: rewrite(d, edit_header=lambda h: h["catalog"].update(fingerprint="0" * 16)),
        "malformed",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_stats_file_is_one_line_and_changes_nothing(kind, good_bytes, tmp_path, capsys):
    make, fragment = BAD_FILES[kind]
    bad = tmp_path / "bad.qstats"
    bad.write_bytes(make(good_bytes))
    good = tmp_path / "good.qstats"
    good.write_bytes(good_bytes)
    out = tmp_path / "merged.qstats"
    out.write_bytes(b"old")
    for argv in (["report", str(bad)], ["merge", str(good), str(bad), "--output", str(out)]):
        code, stdout, err = run(capsys, *argv)
        one_line(code, err, str(bad), fragment)
        assert stdout == ""
    assert out.read_bytes() == b"old"
    with pytest.raises(StatsFileError):
        statsfile.load(bad)


def test_opening_a_pickle_never_runs_it(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    crafted = tmp_path / "evil.qstats"
    torch.save({"stats": Payload()}, crafted)
    import pickle

    raw = tmp_path / "raw.qstats"
    raw.write_bytes(pickle.dumps(Payload()))
    for path in (crafted, raw):
        one_line(*run(capsys, "report", str(path))[::2], "pickle", "never unpickled")
    # A safetensors file whose JSON carries a pickle is data, nothing more.
    good = tmp_path / "t.qstats"
    assert main(["calibrate", TINY, "--output", str(good), "--batches", "2"]) == 0
    smuggled = rewrite(good.read_bytes(), edit_header=lambda h: h.update(spec=pickle.dumps(Payload()).hex()))
    (tmp_path / "s.qstats").write_bytes(smuggled)
    assert statsfile.load(tmp_path / "s.qstats").spec == pickle.dumps(Payload()).hex()
    assert not marker.exists()


def test_a_header_length_that_looks_like_a_pickle_opcode_is_still_read(good_bytes):
    """The first byte is the low byte of the header's length: 0x80 there is not a pickle."""
    for pad in range(300):
        data = rewrite(good_bytes, edit_header=lambda h, pad=pad: h.update(spec="x" * pad))
        if data[0] == 0x80:
            break
    assert data[0] == 0x80
    assert statsfile.decode(data).spec == "x" * pad


def test_missing_and_unwritable_paths(tmp_path, capsys):
    one_line(*run(capsys, "report", str(tmp_path / "none.qstats"))[::2], "no such file")
    one_line(*run(capsys, str(tmp_path / "none.qstats"))[::2], "no such file")
    one_line(
        *run(capsys, "calibrate", TINY, "--output", str(tmp_path / "no" / "x.qstats"))[::2],
        "cannot write stats file",
        "does not exist",
    )


# Distributed -----------------------------------------------------------------------------


def test_sharding_takes_every_world_size_th_batch():
    shard = shard_batches(iter(range(10)), 1, 3)
    assert list(shard) == [1, 4, 7]
    sized = shard_batches(list(range(10)), 2, 3, max_batches=7)
    assert len(sized) == 2 and list(sized) == [2, 5]
    assert takes_rank(lambda rank, world_size: None) and not takes_rank(lambda num_batches=3, size=2: None)


def test_a_file_that_shards_itself_is_called_with_rank_and_world_size():
    loaded = load_model(SHARDED)
    mine = list(open_shard(loaded, World(1, 2)))
    everything = list(open_batches(load_model(SHARDED)))
    assert len(mine) == 4 and all(torch.equal(a, b) for a, b in zip(mine, everything[1::2]))


@pytest.mark.parametrize("spec", ["showcase", SHARDED])
def test_two_gloo_ranks_equal_one_process(spec, tmp_path, capsys):
    target = tmp_path / "two.qstats"
    done = torchrun("calibrate", spec, "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert "on 2 ranks" in done.stderr and "(rank 0 of 2)" in done.stderr
    two = statsfile.load(target)
    assert two.provenance["world_size"] == 2 and two.provenance["backend"] == "gloo"
    one_path = tmp_path / "one.qstats"
    assert main(["calibrate", spec, "--output", str(one_path)]) == 0
    one = statsfile.load(one_path)
    assert_same_stats(two.stats, one.stats)
    capsys.readouterr()
    for fmt in ("text", "markdown"):
        assert (
            run(capsys, "report", str(target), "--format", fmt)[1]
            == run(capsys, "report", str(one_path), "--format", fmt)[1]
        )
    # And it is the merge of the two ranks' own stats.
    loaded = load_model(spec)
    parts = []
    for rank in range(2):
        session = Session(loaded.model, label=loaded.spec)
        parts.append(session.calibrate(open_shard(load_model(spec), World(rank, 2)), Settings.build()))
    assert_same_stats(two.stats, parts[0].merge(parts[1]), exact_sums=True)


def test_a_failing_rank_stops_every_rank_with_one_line_and_no_file(tmp_path):
    target = tmp_path / "never.qstats"
    done = torchrun("calibrate", SHARDED, "--output", str(target), env={"FAIL_ON_RANK_1": "1"})
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("tui-quantreport:")]
    assert len(ours) == 1, done.stderr
    assert ours[0].startswith("tui-quantreport: error: rank 1 of 2 failed: batch 1 was rejected in module '0' (Linear)")
    assert "exitcode  : 2" in done.stderr  # every rank exited with status 2
    assert not target.exists() and not list(tmp_path.iterdir())
