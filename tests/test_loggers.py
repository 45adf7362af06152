"""Loggers beside log.jsonl: each backend read back with its own library's reader.

What users rely on: every number a logger shows is the log's number (bitwise for the
non-timing fields), each generation appears once even across an interrupted-and-resumed
run, loggers are closed on every way a run ends, a failing logger never changes the run,
and a missing extra is refused before anything is written, naming the install command.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import pytest

from asktell.config import config_from_dict, load_config
from asktell.errors import MissingDependencyError
from asktell.loggers import Resume, metric_name
from asktell.loggers.csv_file import CSVLogger
from asktell.loggers.tensorboard import TensorBoardLogger
from asktell.runlog import TIMING_FIELDS, read_log
from asktell.runner import resume, run

BASE = {
    "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1, "learning_rate": 0.1},
    "task": {"kind": "function", "name": "sphere", "num_params": 3, "shift": 1.0},
    "noise": {"size": 4096},
    "budget": {"generations": 7},
    "output": {"log_format": "none", "eval_every": 3, "checkpoint_every": 5},
}


def config(*loggers, **output):
    cfg = json.loads(json.dumps(BASE))
    cfg["output"].update(output, loggers=list(loggers))
    return cfg


def expected(row):
    """The row's numbers a metric logger must show: non-timing, defined, numeric."""
    return {
        metric_name(k): v for k, v in row.items()
        if k not in TIMING_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


# --------------------------------------------------------------------------- readers
# Each returns [(step, {metric: value})], one entry per logged (step, metric) group, so a
# step logged twice shows up twice.
def read_tensorboard(run_dir, sub=""):
    # The accumulator the TensorBoard server itself reads runs with (it applies the purge of
    # a resumed session; the legacy one purges only simple_value scalars).
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(run_dir / "tensorboard" / sub), tensor_size_guidance={"scalars": 0})
    acc.Reload()
    by_step: dict[int, dict[str, float]] = {}
    counts: dict[tuple[int, str], int] = {}
    scalar_tags = acc.PluginTagToContent("scalars")
    assert set(scalar_tags) == set(acc.Tags()["tensors"])  # every metric is a scalar to TB
    for tag in scalar_tags:
        for event in acc.Tensors(tag):
            by_step.setdefault(event.step, {})[tag] = tensor_util.make_ndarray(event.tensor_proto).item()
            counts[event.step, tag] = counts.get((event.step, tag), 0) + 1
    assert max(counts.values()) == 1, "a step was logged twice"
    return sorted(by_step.items())


def read_mlflow(run_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    by_step: dict[int, dict[str, float]] = {}
    for key in client.get_run(run_id).data.metrics:
        history = client.get_metric_history(run_id, key)
        assert len({m.step for m in history}) == len(history), f"{key}: a step logged twice"
        for m in history:
            by_step.setdefault(m.step, {})[key] = m.value
    return sorted(by_step.items()), client.get_run(run_id)


def _leveldb_records(path: Path) -> list[bytes]:
    """The records of a W&B transaction log (``run-ID.wandb``): a 7-byte W&B header, then
    LevelDB's log format (32 KiB blocks; each fragment has a 7-byte header: CRC, length,
    type FULL/FIRST/MIDDLE/LAST). wandb 0.31 ships no Python reader of its own."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, out, partial = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            partial = chunk
        elif kind == 3:
            partial += chunk
        elif kind == 4:
            out.append(partial + chunk)
    return out


def _wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    # wandb-core writes the log in its own process; run.finish() can return (seen on this
    # loaded 2-core machine) before the last records reach the file, so wait for the exit
    # record that closes every finished run.
    deadline = time.monotonic() + 30
    while True:
        records = []
        for data in _leveldb_records(path):
            record = pb.Record()
            record.ParseFromString(data)
            records.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after 30 s")
        time.sleep(0.2)


def read_wandb(run_dir):
    rows = []
    paths = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert paths, f"no offline W&B run in {run_dir}"
    for path in paths:
        for record in _wandb_records(path):
            if record.WhichOneof("record_type") != "history":
                continue
            items = {
                (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                for i in record.history.item
            }
            rows.append((int(items.pop("_step")), {k: v for k, v in items.items()
                                                    if not k.startswith("_")}))
    steps = [s for s, _ in rows]
    assert len(set(steps)) == len(steps), "a step was logged twice"
    return sorted(rows)


def read_backend(kind, run_dir):
    if kind == "tensorboard":
        return read_tensorboard(run_dir)
    if kind == "mlflow":
        return read_mlflow(run_dir)[0]
    return read_wandb(run_dir)


METRIC_BACKENDS = ["tensorboard", "mlflow", "wandb"]


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


# --------------------------------------------------------------------------- the numbers
@pytest.mark.parametrize("kind", METRIC_BACKENDS)
def test_backend_reads_back_the_log_rows_bitwise_one_step_per_generation(kind, tmp_path):
    pytest.importorskip(kind)
    out = tmp_path / "run"
    run(config({"kind": kind}), out=out)
    rows = read_log(out)
    got = read_backend(kind, out)
    assert [step for step, _ in got] == [r["generation"] for r in rows] == list(range(1, 8))
    for (step, metrics), row in zip(got, rows):
        want = expected(row)
        assert {k: metrics[k] for k in want} == want, f"generation {step}"
        # the centre is evaluated every 3rd generation: its metric only there
        assert ("center/center_return_mean" in metrics) == (step % 3 == 0)


def test_tensorboard_also_plots_returns_against_environment_steps(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    run(config({"kind": "tensorboard"}), out=out)
    rows = read_log(out)
    got = read_tensorboard(out, "env_steps")
    assert [s for s, _ in got] == [r["env_steps"] for r in rows]
    assert [m["vs_env_steps/population/return_mean"] for _, m in got] == [
        r["return_mean"] for r in rows
    ]


def test_mlflow_stores_the_config_as_parameters_and_the_end_as_status(tmp_path):
    pytest.importorskip("mlflow")
    out = tmp_path / "run"
    run(config({"kind": "mlflow", "experiment": "mine"}), out=out)
    _, mlrun = read_mlflow(out)
    assert mlrun.data.params["strategy.sigma"] == "0.1"
    assert mlrun.data.params["task.name"] == "sphere"
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.tags["asktell.stop_reason"] == "generations budget reached (7)"
    assert (out / "mlruns").is_dir()


def test_csv_holds_every_field_of_every_row_including_columns_that_appear_later(tmp_path):
    out = tmp_path / "run"
    run(config({"kind": "csv"}), out=out)
    rows = read_log(out)
    with open(out / "log.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) == 7
    assert "center_return_mean" in table[0]  # first seen at generation 3: header widened
    for line, row in zip(table, rows):
        assert set(line) == set().union(*rows)
        for key, value in row.items():
            text = line[key]
            if value is None:
                assert text == ""
            elif isinstance(value, float):
                assert float(text) == value  # repr round trip: bitwise
            else:
                assert text == str(value)
        assert all(line[k] == "" for k in set(line) - set(row))


@pytest.mark.parametrize("path", ["log.jsonl", "./config.toml", "checkpoints/x.csv", "sub/../warnings.log"])
def test_a_csv_file_may_not_replace_the_runs_own_files(tmp_path, path):
    from asktell.errors import ConfigError

    with pytest.raises(ConfigError, match=r"output.loggers.0.path: names the run's own"):
        config_from_dict(config({"kind": "csv", "path": path}))
    # an absolute path into the run directory: the logger fails to open, the run's files stay
    out = tmp_path / "run"
    run(config({"kind": "csv", "path": str(out / "log.jsonl")}), out=out)
    rows = read_log(out)
    assert len(rows) == 7 and all("generation" in row for row in rows)


def test_a_csv_file_in_a_subfolder_is_written_and_a_folder_is_refused(tmp_path):
    """"sub/log.csv" passed check, then the logger was dropped (its folder was not made);
    "." passed too and left a stray file beside the run directory."""
    from asktell.errors import ConfigError

    out = tmp_path / "run"
    run(config({"kind": "csv", "path": "sub/log.csv"}), out=out)
    with open(out / "sub" / "log.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 7
    for path in (".", "..", "./"):
        with pytest.raises(ConfigError, match="output.loggers.0.path: names the run's own directory"):
            config_from_dict(config({"kind": "csv", "path": path}))


def test_check_refuses_a_logger_whose_package_is_missing(monkeypatch):
    """run refused a logger whose extra is not installed; check (which promises to find
    what run would refuse) passed it."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    cfg = config_from_dict(config({"kind": "tensorboard"}))
    with pytest.raises(MissingDependencyError, match="tensorboard"):
        cfg.check()


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kind", ["csv", *METRIC_BACKENDS])
def test_resume_continues_the_series_without_a_repeated_step(kind, tmp_path):
    if kind != "csv":
        pytest.importorskip(kind)
    out = tmp_path / "run"
    run(config({"kind": kind}), out=out)
    # An interruption after generation 7 was logged but before its checkpoint: the run
    # resumes from generation 5 and redoes 6 and 7, which every logger has already seen.
    for path in (out / "checkpoints").glob("gen-000007.*"):
        path.unlink()
    result = resume(out, log_format="none")
    assert result.generation == 7
    rows = read_log(out)
    if kind == "csv":
        with open(out / "log.csv", newline="") as fh:
            table = list(csv.DictReader(fh))
        assert [int(r["generation"]) for r in table] == list(range(1, 8))
        # the redone rows replaced the first session's: the file is log.jsonl, timings too
        assert [float(r["wall_seconds"]) for r in table] == [r["wall_seconds"] for r in rows]
        return
    got = read_backend(kind, out)
    assert [step for step, _ in got] == list(range(1, 8))
    for (step, metrics), row in zip(got, rows):
        want = expected(row)
        assert {k: metrics[k] for k in want} == want, f"generation {step}"


def test_tensorboard_resume_purges_what_the_interrupted_session_wrote_past_the_checkpoint(tmp_path):
    # A known break: a restart marker past the redone generations (as if resuming from the
    # last logged step, not the checkpoint) would leave 6 and 7 shown twice; the reader
    # counts every (step, tag) and refuses a repeat.
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    run(config({"kind": "tensorboard"}), out=out)
    for path in (out / "checkpoints").glob("gen-000007.*"):
        path.unlink()
    import asktell.loggers.tensorboard as tb

    original = tb.TensorBoardLogger.open

    def open_without_purge(self, run_dir, cfg, resume_at):
        original(self, run_dir, cfg, Resume(7, 10**9))

    tb.TensorBoardLogger.open = open_without_purge
    try:
        resume(out, log_format="none")
    finally:
        tb.TensorBoardLogger.open = original
    with pytest.raises(AssertionError, match="logged twice"):
        read_tensorboard(out)


# --------------------------------------------------------------------------- lifecycle
def _record_close(monkeypatch):
    reasons: list[str] = []
    original = CSVLogger.close

    def close(self, reason):
        reasons.append(reason)
        original(self, reason)

    monkeypatch.setattr(CSVLogger, "close", close)
    return reasons


def _raise(exc):
    def callback(row):
        if row["generation"] == 2:
            raise exc
    return callback


@pytest.mark.parametrize(
    "how, changes, callback, error, reason",
    [
        ("budget", {}, None, None, "generations budget reached (7)"),
        ("target", {"budget": {"generations": 50, "target_return": -1e9}}, None, None, "target"),
        ("interrupt", {}, _raise(KeyboardInterrupt()), KeyboardInterrupt, "interrupted"),
        ("exception", {}, _raise(RuntimeError("boom")), RuntimeError,
         "error: RuntimeError: boom"),
    ],
)
def test_loggers_are_closed_on_every_way_a_run_ends(
    how, changes, callback, error, reason, tmp_path, monkeypatch
):
    reasons = _record_close(monkeypatch)
    cfg = config({"kind": "csv"})
    cfg.update(changes)
    out = tmp_path / "run"
    if error is None:
        run(cfg, out=out, callback=callback)
    else:
        with pytest.raises(error):
            run(cfg, out=out, callback=callback)
    assert len(reasons) == 1 and reason in reasons[0], (how, reasons)
    with open(out / "log.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(read_log(out))


def test_a_failing_logger_is_reported_once_dropped_and_never_changes_the_run(
    tmp_path, monkeypatch, capsys
):
    plain = tmp_path / "plain"
    run(config(), out=plain)

    def broken_log(self, row):
        if row["generation"] >= 2:
            raise OSError("disk full")
        CSVLogger.log.__wrapped__(self, row)

    broken_log.__wrapped__ = CSVLogger.log  # type: ignore[attr-defined]
    monkeypatch.setattr(CSVLogger, "log", broken_log)
    monkeypatch.setattr(
        TensorBoardLogger, "open", lambda *a: (_ for _ in ()).throw(ValueError("no dir"))
    )
    out = tmp_path / "run"
    cfg = config({"kind": "tensorboard"}, {"kind": "csv"}, {"kind": "csv", "path": "b.csv"},
                 log_format="plain")
    result = run(cfg, out=out)
    text = capsys.readouterr().out
    assert result.generation == 7
    assert text.count("disk full") == 2  # once for each CSV logger, never again
    assert text.count("output.loggers[0] (tensorboard) failed in open(): ValueError: no dir") == 1
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]
    assert strip(read_log(out)) == strip(read_log(plain))
    assert (out / "checkpoints" / "gen-000007.json").exists()


def test_a_missing_extra_is_refused_before_the_run_directory_exists(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    out = tmp_path / "run"
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[mlflow\]"'):
        run(config({"kind": "csv"}, {"kind": "mlflow"}), out=out)
    assert not out.exists()


# --------------------------------------------------------------------------- config
def test_run_file_loggers_are_validated_and_survive_the_resolved_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        '[strategy]\nkind = "openai_es"\n[task]\nkind = "function"\nname = "sphere"\n'
        "num_params = 3\n[budget]\ngenerations = 2\n"
        '[[output.loggers]]\nkind = "csv"\npath = "metrics.csv"\n'
        '[[output.loggers]]\nkind = "mlflow"\nexperiment = "es"\n'
    )
    cfg = load_config(path)
    assert [lg.kind for lg in cfg.output.loggers] == ["csv", "mlflow"]
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml())
    assert load_config(again).output.loggers == cfg.output.loggers


@pytest.mark.parametrize(
    "logger, message",
    [
        ({"kind": "tensorbord"}, "output.loggers.0.kind: unknown logger 'tensorbord'; did you "
         "mean 'tensorboard'?"),
        ({"kind": "wandb", "mode": "cloud"}, "output.loggers.0.mode: Input should be 'auto', "
         "'online', 'offline' or 'disabled'"),
        ({"path": "x.csv"}, "output.loggers.0.kind: 'kind' is required"),
    ],
)
def test_bad_logger_settings_name_the_field(logger, message):
    from asktell.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        config_from_dict(config(logger))


def test_set_on_the_command_line_takes_a_list_of_logger_tables():
    cfg = config_from_dict(config(), ["output.loggers=[{kind: tensorboard}, {kind: csv}]"])
    assert [lg.kind for lg in cfg.output.loggers] == ["tensorboard", "csv"]


def test_docs_list_every_option_of_every_logger():
    from asktell.config import plugin_configs

    page = (Path(__file__).resolve().parents[1] / "docs" / "loggers.md").read_text()
    for kind, model in plugin_configs("logger").items():
        for option in model.model_fields:
            if option != "kind":
                assert f"| `{kind}` | `{option}` |" in page, (kind, option)


def test_loading_the_logger_family_imports_no_backend():
    import subprocess

    code = (
        "import sys, asktell.runner; from asktell.registry import LOGGERS;"
        "names = LOGGERS.names();"
        "print(names, [m for m in ('tensorboard', 'mlflow', 'wandb') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['csv', 'mlflow', 'tensorboard', 'wandb'] []"
