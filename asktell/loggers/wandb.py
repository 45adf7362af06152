"""Weights & Biases logger: the config as the run's config, each row as one ``log`` call.

``mode = "auto"`` (the default) logs online when an API key is configured (``WANDB_API_KEY``
or ``wandb login``) and offline otherwise, so a run never needs the network; an offline run
lands in ``RUN_DIR/wandb/offline-run-*`` and is uploaded later with ``wandb sync``. Step =
generation; ``progress/env_steps`` is logged too, to pick as the x axis in the W&B UI.

On resume the same W&B run id is used (``resume="allow"``; the id is kept in
``wandb_run_id`` in the run directory) and generations logged before, up to the last one a
previous session wrote, are skipped: W&B refuses steps that go backwards.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from asktell.config_base import declare_options
from asktell.loggers._base import LoggerConfig, Resume, numeric_fields
from asktell.registry import LOGGERS

__all__ = ["WandbLogger", "WandbLoggerConfig"]

STATE_FILE = "wandb_run_id"


class WandbLoggerConfig(LoggerConfig):
    kind: Literal["wandb"] = "wandb"
    requires = ("wandb",)
    project: str = Field("asktell", min_length=1, description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (user or team); default: yours.")
    name: str | None = Field(None, description="W&B run name. Default: the run directory's name.")
    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="'auto': online when an API key is configured (WANDB_API_KEY or "
        "`wandb login`), else offline (no network; upload later with `wandb sync`).",
    )


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


@declare_options(WandbLoggerConfig)
@LOGGERS.register("wandb")
class WandbLogger:
    """Logs each row to a Weights & Biases run (offline unless an API key is configured)."""

    def __init__(self, **options: Any):
        self.options = WandbLoggerConfig.validate_options("WandbLogger", options)
        self.run: Any = None
        self.last_step = 0
        self._state: Path | None = None

    def open(self, run_dir: Path, config: Any, resume: Resume | None) -> None:
        from asktell._extras import require

        wandb = require("wandb", "the 'wandb' logger")
        run_dir = Path(run_dir)
        mode = self.options.mode
        if mode == "auto":
            mode = os.environ.get("WANDB_MODE") or ("online" if _has_api_key() else "offline")
        self._state = run_dir / STATE_FILE
        run_id = None
        if resume is not None and self._state.is_file():
            saved = json.loads(self._state.read_text())
            run_id, self.last_step = saved["id"], int(saved["last_step"])
        data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
        self.run = wandb.init(
            project=self.options.project, entity=self.options.entity,
            name=self.options.name or run_dir.name, dir=str(run_dir), mode=mode,
            config=data, id=run_id or uuid.uuid4().hex[:8],
            resume="allow" if run_id else None, reinit="create_new",
            # W&B's own console lines and stdout capture would write through the live display.
            settings=wandb.Settings(silent=True, console="off"),
        )
        self._save()

    def _save(self) -> None:
        state = {"id": self.run.id, "last_step": self.last_step}
        self._state.write_text(json.dumps(state))  # type: ignore[union-attr]

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["generation"])
        if step <= self.last_step:
            return  # logged by the session a resume redoes
        self.run.log(numeric_fields(row), step=step)
        self.last_step = step
        self._save()

    def close(self, reason: str) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.summary["asktell/stop_reason"] = reason
            run.finish(exit_code=0 if not reason.startswith(("interrupted", "error")) else 1)
