"""The options of :class:`~asktell.gym.GymTask`, declared once: its run-file settings
(``kind = "gym"``) and its constructor's keywords."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from asktell.config_base import Bool, Float, Int, PluginConfig

__all__ = ["GymTaskConfig", "STEP_CAPS"]

#: ``default``: the environment's own time limit. ``fixed``: ``max_episode_steps`` replaces
#: it. ``adaptive``: the paper's cap, about ``adaptive_cap_factor`` times the mean episode
#: length of the previous generation, below the time limit.
STEP_CAPS = ("default", "fixed", "adaptive")


class GymTaskConfig(PluginConfig):
    """Run-file settings of :class:`GymTask` (``kind = "gym"``).

    Also its constructor's keywords: the one declaration of its options."""

    kind: Literal["gym"] = "gym"
    env_id: str = Field(
        ...,
        min_length=1,
        description="Gymnasium environment id, e.g. 'CartPole-v1' or 'HalfCheetah-v5' "
        "('module:EnvId' imports module first).",
    )
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of gymnasium.make."
    )
    policy: Literal["mlp", "linear"] = Field(
        "mlp",
        description="Policy network (in Python also a policy object with the interface of "
        "asktell.gym.policies.MLPPolicy).",
    )
    hidden_sizes: list[Annotated[Int, Field(ge=1)]] | None = Field(
        None,
        description="Hidden layer widths of the MLP; default [64, 64] (the paper's MuJoCo net). "
        "Not allowed with policy='linear'.",
    )
    activation: Literal["tanh", "relu"] = Field("tanh", description="Hidden-layer nonlinearity.")
    bias: Bool = Field(True, description="Whether the policy's layers have biases.")
    policy_dtype: Literal["float32", "float64"] = Field(
        "float32",
        description="Arithmetic of the policy (float32 halves the memory traffic of many "
        "candidates' weights; float64 for exactness studies).",
    )
    action_mode: Literal["tanh", "clip", "bins"] = Field(
        "tanh",
        description="Box actions: squash into the bounds (tanh), clip raw outputs (clip), or "
        "discretise each dimension into action_bins values (bins; the paper's Hopper setting).",
    )
    action_bins: Int = Field(10, ge=2, description="Bins per action dimension in 'bins' mode.")
    episodes: Int = Field(1, ge=1, description="Episodes per candidate; its return is their mean.")
    step_cap: Literal["default", "fixed", "adaptive"] = Field(
        "default",
        description="Episode step cap: the env's own limit, max_episode_steps, or the paper's "
        "adaptive cap (about adaptive_cap_factor x the mean episode length).",
    )
    max_episode_steps: Int | None = Field(
        None,
        ge=1,
        description="Time limit for step_cap='fixed' (required) and upper bound for 'adaptive' "
        "(default: the env's limit).",
    )
    adaptive_cap_factor: Float = Field(
        2.0, ge=1.0, description="Adaptive cap = this x the previous generation's mean episode length."
    )
    adaptive_cap_min: Int = Field(50, ge=1, description="The adaptive cap never goes below this.")
    obs_norm: Bool = Field(True, description="Normalise observations with running statistics.")
    obs_clip: Float = Field(5.0, gt=0, description="Normalised observations are clipped to +-this.")
    obs_std_floor: Float = Field(
        0.1, gt=0, description="Smallest std used to normalise (OpenAI: variance floor 1e-2)."
    )
    obs_stats_fraction: Float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of candidates (chosen deterministically) whose observations feed "
        "the statistics.",
    )
    mirrored_episode_seeds: Bool = Field(
        True, description="Mirrored candidates k and ~k share their episode seeds."
    )
    seed: Int = Field(0, ge=0, description="Run seed from which every episode seed derives.")

    @model_validator(mode="after")
    def _rules(self) -> "GymTaskConfig":
        """`step_cap = "fixed"` needs `max_episode_steps`; `max_episode_steps` needs
        `step_cap = "fixed"` or `"adaptive"`; a linear policy has no `hidden_sizes`."""
        if self.step_cap == "fixed" and self.max_episode_steps is None:
            raise ValueError("step_cap='fixed' needs max_episode_steps")
        if self.step_cap == "default" and self.max_episode_steps is not None:
            raise ValueError(
                f"max_episode_steps={self.max_episode_steps} needs step_cap='fixed' or 'adaptive'"
            )
        if (
            self.step_cap == "adaptive" and self.max_episode_steps is not None
            and self.adaptive_cap_min > self.max_episode_steps
        ):
            raise ValueError(
                f"adaptive_cap_min={self.adaptive_cap_min} exceeds max_episode_steps="
                f"{self.max_episode_steps}, the cap's upper bound: the cap would sit at "
                f"{self.max_episode_steps}, never at its minimum; lower adaptive_cap_min"
            )
        if self.policy == "linear" and self.hidden_sizes:
            raise ValueError(
                f"policy='linear' has no hidden layers; got hidden_sizes={self.hidden_sizes}"
            )
        return self

    def memory_context(self, task: Any) -> dict[str, Any]:
        """``num_params`` comes from the hidden sizes (an MLP) or the spaces of ``env_id``
        (a linear policy); a slot holds one candidate's weights in ``policy_dtype``."""
        if self.policy == "mlp":
            field = ("task.hidden_sizes", self.hidden_sizes or [64, 64])
        else:
            field = ("task.env_id", self.env_id)
        itemsize = 4 if self.policy_dtype == "float32" else 8
        return {
            "num_params_field": field[0],
            "num_params_value": field[1],
            "obs_dim": int(task.obs_spec.dim),
            "weight_bytes": itemsize * int(task.num_params),
        }

    def estimate_bytes(self, context: Any) -> list[Any]:
        """The initial centre (the policy's initialisation) and one candidate's weights in
        this process's serial rollouts."""
        return [context.per_param(2, "policy initialisation and weights")]

    def build(self) -> Any:
        """The live :class:`GymTask` (the class these options are declared for)."""
        options = self.options()
        return self.plugin(options.pop("env_id"), **options)
