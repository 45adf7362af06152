"""Tasks: what is optimised.

:class:`FunctionTask` wraps a black-box function (:mod:`asktell.tasks.function`). Gymnasium
tasks live in :mod:`asktell.gym` and Atari tasks in :mod:`asktell.atari`; importing this
package imports neither (the task registry loads them on its first lookup).
"""

from .function import FunctionTask, FunctionTaskConfig, NamedFunction

__all__ = ["FunctionTask", "FunctionTaskConfig", "NamedFunction"]
