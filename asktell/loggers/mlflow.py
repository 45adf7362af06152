"""MLflow logger: parameters from the resolved config, metrics per generation.

By default the tracking store is a local folder, ``mlruns`` inside the run directory (view
with ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri RUN_DIR/mlruns``, which needs
the full ``pip install mlflow``: the extra installs the client, ``mlflow-skinny``);
``tracking_uri`` points it at a server or a database (``sqlite:///runs.db``) instead.
Metrics have step = generation; ``progress/env_steps`` is logged too, so the
MLflow UI can use it as the x axis. Values are float64 and read back bitwise.

On resume the same MLflow run continues (its id is kept in ``mlflow_run_id`` in the run
directory). MLflow cannot delete logged values, so generations an interrupted session logged
past the checkpoint are kept and their repeats skipped: no step is logged twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from asktell.config_base import declare_options
from asktell.loggers._base import LoggerConfig, Resume, flat_config, numeric_fields
from asktell.registry import LOGGERS

__all__ = ["MLflowLogger", "MLflowLoggerConfig"]

RUN_ID_FILE = "mlflow_run_id"
# MLflow refuses longer parameter values (6000 characters since 1.x); a list of 1000
# numbers in x0 would be refused whole, so long values are cut and marked.
_MAX_PARAM = 6000


class MLflowLoggerConfig(LoggerConfig):
    kind: Literal["mlflow"] = "mlflow"
    requires = ("mlflow",)
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI. Default: the folder `mlruns` in the run "
        "directory (a local file store, no server)."
    )
    experiment: str = Field("asktell", min_length=1, description="MLflow experiment name.")
    run_name: str | None = Field(
        None, description="MLflow run name. Default: the run directory's name."
    )


@declare_options(MLflowLoggerConfig)
@LOGGERS.register("mlflow")
class MLflowLogger:
    """Logs the config as MLflow parameters and each row as MLflow metrics."""

    def __init__(self, **options: Any):
        self.options = MLflowLoggerConfig.validate_options("MLflowLogger", options)
        self.client: Any = None
        self.run_id: str | None = None
        self.last_step = 0

    def open(self, run_dir: Path, config: Any, resume: Resume | None) -> None:
        from asktell._extras import require

        require("mlflow", "the 'mlflow' logger")
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir)
        uri = self.options.tracking_uri
        if uri is None:
            uri = (run_dir / "mlruns").resolve().as_uri()
            # MLflow 3 refuses its file store unless opted in ("maintenance mode", still
            # read by `mlflow ui`); the folder needs no server nor SQLAlchemy. Set for this
            # process only, and only when the user has not chosen.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        id_file = run_dir / RUN_ID_FILE
        if resume is not None and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            history = self.client.get_metric_history(self.run_id, "progress/generation")
            self.last_step = max((m.step for m in history), default=0)
            return
        experiment = self.client.get_experiment_by_name(self.options.experiment)
        experiment_id = (
            experiment.experiment_id if experiment is not None
            else self.client.create_experiment(self.options.experiment)
        )
        run = self.client.create_run(
            experiment_id, run_name=self.options.run_name or run_dir.name,
            tags={"asktell.run_dir": str(run_dir.resolve())},
        )
        self.run_id = run.info.run_id
        id_file.write_text(self.run_id + "\n")
        from mlflow.entities import Param

        params = [
            Param(k, v if len(v) <= _MAX_PARAM else v[: _MAX_PARAM - 3] + "...")
            for k, v in flat_config(config).items()
        ]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(row["generation"])
        if step <= self.last_step:
            return  # logged by the session a resume redoes (see the module docstring)
        stamp = int(float(row.get("time") or 0.0) * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in numeric_fields(row).items()]
        for i in range(0, len(metrics), 1000):  # log_batch's limit per call
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
        self.last_step = step

    def close(self, reason: str) -> None:
        if self.client is None or self.run_id is None:
            return
        status = "KILLED" if reason.startswith("interrupted") else (
            "FAILED" if reason.startswith("error") else "FINISHED"
        )
        self.client.set_tag(self.run_id, "asktell.stop_reason", reason[:5000])
        self.client.set_terminated(self.run_id, status=status)
        self.client = None
