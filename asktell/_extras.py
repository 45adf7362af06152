"""Optional back-ends: which extra installs which module, and a lazy importer.

The extras themselves are declared once, in ``pyproject.toml``; this table only says which
extra brings which importable module (a test checks every extra named here exists there).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from asktell.errors import MissingDependencyError

EXTRA_FOR_MODULE: dict[str, str] = {
    "gymnasium": "gym",
    "mujoco": "mujoco",
    "ale_py": "atari",
    "dask": "dask",
    "distributed": "dask",
    "matplotlib": "plot",
    "imageio": "video",
    "imageio_ffmpeg": "video",
    "PIL": "video",
    "pygame": "video",
    "tensorboard": "tensorboard",
    "mlflow": "mlflow",
    "wandb": "wandb",
}


def install_command(extra: str) -> str:
    """The one install command every message gives: asktell installs from a clone (it is
    not on a package index), so the extra is installed in that clone."""
    return f'pip install -e ".[{extra}]" (in your asktell clone)'


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module, or raise an error that prints the install command.

    Args:
        module: the importable name, e.g. ``"distributed"``.
        purpose: what the caller wanted it for, e.g. ``"DaskEvaluator"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRA_FOR_MODULE.get(module.split(".")[0], "all")
        raise MissingDependencyError(
            f"{purpose} needs the optional package '{module}', which is not installed; "
            f"install it with: {install_command(extra)}"
        ) from exc
