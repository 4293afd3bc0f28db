"""Where ``--output`` writes: ``-`` is stdout; character devices and FIFOs (``/dev/null``,
``/dev/stdout``, a named pipe) are written plainly and a write error is reported; symlinks are
followed; a socket is refused in one line; names at the length limits work; SIGTERM during a
write leaves no temporary file (docs/bad-input.md)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from cli_helpers import TINY, one_line, run, subprocess_cli

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.export import write_atomic

ROOT = Path(__file__).resolve().parent.parent


# --output never replaces what the user did not name ---------------------------------------


def test_output_dash_writes_to_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--output", "-", "--batches", "2")
    assert code == 0, err
    assert json.loads(out)["calibration"]["batches"] == 2
    assert not (tmp_path / "-").exists()


def test_a_fifo_is_written_plainly_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []

    def reader():
        with open(fifo) as handle:
            received.append(handle.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    write_atomic(fifo, "hello\n")
    thread.join(10)
    assert received == ["hello\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def _private_device(tmp_path, name: str, minor: int):
    """A character device node of the memory driver (1, minor) in tmp_path: 3 is null, 7 is full."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a character device here: {exc}")
    return path


def test_a_character_device_is_written_plainly_not_replaced(tmp_path):
    null = _private_device(tmp_path, "null", 3)  # a private /dev/null
    write_atomic(null, "x" * 1000)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_full_character_device_reports_the_failure(tmp_path):
    full = _private_device(tmp_path, "full", 7)  # a private /dev/full
    with pytest.raises(UserError, match="cannot write report to .*full"):
        write_atomic(full, "x" * 100_000)
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_a_chain_of_relative_symlinks_is_followed(tmp_path):
    (tmp_path / "d").mkdir()
    real = tmp_path / "d" / "real.json"
    real.write_text("old")
    (tmp_path / "a").symlink_to("d/real.json")
    (tmp_path / "b").symlink_to("a")
    write_atomic(tmp_path / "b", "new")
    assert real.read_text() == "new" and (tmp_path / "b").is_symlink() and (tmp_path / "a").is_symlink()


def test_a_socket_is_refused_in_one_line(capsys):
    folder = tempfile.mkdtemp(prefix="tqr", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(folder, "s")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
        code, out, err = run(capsys, "report", TINY, "--output", path, "--batches", "1")
        one_line(code, err, "not a regular file")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(folder)


def test_cli_says_where_it_wrote_a_fifo(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    thread = threading.Thread(target=lambda: received.append(open(fifo).read()), daemon=True)
    thread.start()
    code, out, err = run(capsys, "report", TINY, "--format", "json", "--output", fifo, "--batches", "1")
    thread.join(10)
    assert code == 0, err
    assert json.loads(received[0])["calibration"]["batches"] == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dev_stdout_into_a_pipe_prints_the_report():
    proc = subprocess_cli("report", TINY, "--format", "json", "--probe-batches", "0", "--output", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["format"] == "tui-quantreport.report/1"


def test_dev_stdout_redirected_to_a_file_writes_through_it(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("kept\n")
    inode = os.stat(target).st_ino
    with open(target, "a") as handle:  # the shell's `>> out.txt`
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tui_quantreport",
                "report",
                TINY,
                "--probe-batches",
                "0",
                "--output",
                "/dev/stdout",
            ],
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    assert text.startswith("kept\n") and "Sequential, 7 modules" in text
    assert os.stat(target).st_ino == inode  # the same file, not one renamed over it
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# Export path edges -------------------------------------------------------------------------


def test_trailing_slash_on_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="folder"):
        write_atomic(str(tmp_path / "missing") + "/", "x")
    assert list(tmp_path.iterdir()) == []


def test_trailing_slash_on_an_existing_file_is_refused(tmp_path):
    (tmp_path / "f.json").write_text("old")
    with pytest.raises(UserError):
        write_atomic(str(tmp_path / "f.json") + "/", "x")
    assert (tmp_path / "f.json").read_text() == "old"


def test_a_250_character_name_can_be_written(tmp_path):
    name = "r" * 245 + ".json"
    write_atomic(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_255_byte_multibyte_name_can_be_written(tmp_path):
    name = "é" * 125 + ".json"  # 250 + 5 bytes
    assert len(name.encode()) == 255
    write_atomic(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok"


def _killed_by_sigterm_leaving_only_the_old_file(script: str, tmp_path, target) -> None:
    """Run ``script`` (it writes ``target`` and SIGTERMs itself mid-write): the process ends as
    SIGTERM ends it, and the folder holds the old file only (no temporary file)."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr)
    assert "survived" not in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert target.read_text() == "old"


def test_sigterm_during_a_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from tui_quantreport.engine import export
        real_fsync = os.fsync
        def slow_fsync(fd):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            real_fsync(fd)
        export.os.fsync = slow_fsync
        export.write_atomic({str(target)!r}, "new" * 1_000_000)
        print("survived")
        """
    )
    _killed_by_sigterm_leaving_only_the_old_file(script, tmp_path, target)


def test_sigterm_during_a_write_in_a_worker_thread_leaves_no_temp_file(tmp_path):
    """The app writes in worker threads, which cannot set signal handlers: the handler installed in
    the main thread (cli.run_app does it before the app starts) removes their temporary files."""
    target = tmp_path / "r.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time
        from tui_quantreport.engine import export
        assert export.install_sigterm_cleanup()
        real_fsync = os.fsync
        def slow_fsync(fd):
            assert [p for p in os.listdir({str(tmp_path)!r}) if p.endswith(".tmp")]
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            real_fsync(fd)
        export.os.fsync = slow_fsync
        worker = threading.Thread(target=export.write_atomic, args=({str(target)!r}, "new" * 1_000_000))
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
        print("survived")
        """
    )
    _killed_by_sigterm_leaving_only_the_old_file(script, tmp_path, target)
