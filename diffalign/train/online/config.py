"""Config dataclasses of the online trainers: one per trainer on the shared ``TrainConfig`` base.

For every online trainer one training *step* is one iteration: sample rollouts with the current
policy, score them, then update on them. ``max_steps`` counts iterations (``checkpointing_steps``,
``validation.every_steps`` and ``evaluation.every_steps`` too); the optimizer steps an iteration
makes are documented on each trainer's config. Sizes are per process: with ``W`` processes an
iteration samples ``W x sampling.batch_size x sampling.num_batches`` rollouts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from diffalign.config import choice
from diffalign.losses import REWARD_LOSS_KINDS
from diffalign.rewards import REWARDS
from diffalign.train.config import TrainConfig

#: AlignProp's ways of drawing the truncation cut-off.
TRUNCATIONS = ("gaussian", "uniform", "fixed")

#: keys of the online configs renamed when every trainer took one name per concept (old -> new,
#: relative to the config): one sampling-steps name (diffusers' ``num_inference_steps``), and the
#: loss's parameters in a ``loss:`` section (``loss.beta`` is the KL weight wherever there is one).
_NUM_STEPS_RENAMED = {"num_steps": "num_inference_steps"}
_PPO_RENAMED = {"clip_range": "loss.clip_range", "adv_clip_max": "loss.adv_clip_max"}


@dataclass
class PromptsConfig:
    """Where the training (and evaluation) prompts come from.

    ``source``: ``shapes`` (the shapes world's GenEval rows of ``split``; metadata = the row),
    ``shapes_video`` (the moving-shapes world's rows of ``split``, for the ``shapes_video`` reward;
    ``categories`` and ``shapes_rows`` as for ``shapes``),
    ``list`` (``items``), or ``file``: ``path`` to a ``.txt`` (one prompt per line) or ``.jsonl``
    (one row per line with a ``prompt`` key; the whole row is the reward's metadata, so GenEval
    metadata files work as they are).
    """

    source: str = choice("shapes", ("shapes", "shapes_video", "list", "file"))
    items: list[str] = field(default_factory=list)
    path: Optional[str] = None
    #: shapes world: the prompt split trained on and the held-out split evaluated on.
    split: str = "train"
    eval_split: str = "test"
    #: shapes world: GenEval categories to use (default: all six).
    categories: Optional[list[str]] = None
    #: shapes world: training rows drawn balanced over the categories (``shapes.sample_rows``,
    #: seeded by the run's ``seed``); 0 = every row of the split (the splits are dominated by
    #: ``color_attr``, which has by far the most distinct prompts).
    shapes_rows: int = 600
    #: evaluation prompts for ``list``/``file`` sources (a file like ``path``; default: the training prompts).
    eval_path: Optional[str] = None


@dataclass
class SamplingConfig:
    """How rollouts are sampled (per process)."""

    renamed_keys: ClassVar[dict[str, str]] = _NUM_STEPS_RENAMED

    num_inference_steps: int = 20
    guidance_scale: float = 5.0
    #: sampler stochasticity: DDIM eta for DDPM families (> 0 for policy-gradient trainers), the
    #: SDE ``a`` for flow families; None = the family default (eta 1.0, a 0.7).
    noise_level: Optional[float] = None
    #: None = the family's default (empty prompt, or zeros where the pipeline uses them).
    negative_prompt: Optional[str] = None
    #: output size; None = the model's default (and its default frame count for video).
    height: Optional[int] = None
    width: Optional[int] = None
    num_frames: Optional[int] = None
    #: rollouts per sampling batch, and sampling batches per iteration.
    batch_size: int = 4
    num_batches: int = 1


@dataclass
class RewardConfig:
    #: a name ``diffalign.rewards.load`` knows (``shapes``, ``shapes_color``, ``aesthetic``, ``video``...).
    name: str = choice("shapes", REWARDS.names)
    #: keyword arguments of the reward (checkpoint paths, ``reward`` for the ``video`` wrapper...).
    options: dict[str, Any] = field(default_factory=dict)
    #: threads scoring rewards while the next batch samples (0 = score in the loop).
    workers: int = 1


@dataclass
class GoldRewardConfig:
    """A second reward scored on the held-out samples beside the training reward (logged as
    ``gold_reward_mean``), so reward hacking shows as the two curves diverging."""

    #: a reward name (``shapes`` = the shapes judge, ``remote``, ...); unset = no gold reward.
    name: Optional[str] = choice(None, REWARDS.names)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluationConfig:
    """Held-out reward of the current policy (EMA weights when the trainer keeps them)."""

    #: evaluate before training and every N iterations (0 = never).
    every_steps: int = 0
    #: held-out prompts (shapes: drawn balanced over the categories with ``seed``; other
    #: sources: the first N of the evaluation prompts; 0 = all).
    num_prompts: int = 60
    batch_size: int = 16
    renamed_keys: ClassVar[dict[str, str]] = _NUM_STEPS_RENAMED

    #: None = the sampling settings; ``noise_level`` None = deterministic sampling (DDIM eta 0, flow ODE).
    num_inference_steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    noise_level: Optional[float] = None
    seed: int = 0
    gold_reward: GoldRewardConfig = field(default_factory=GoldRewardConfig)


@dataclass
class PPOLossConfig:
    """``loss:`` of DDPO: the clipped surrogate's arguments (``diffalign.losses.ppo_loss``)."""

    clip_range: float = 1e-4
    adv_clip_max: float = 5.0


@dataclass
class FlowGRPOLossConfig(PPOLossConfig):
    """``loss:`` of Flow-GRPO: the clipped surrogate plus ``beta`` x the KL to the reference."""

    beta: float = 0.04
    #: adaptive KL: adapt ``beta`` (its start value) after every optimizer step so the measured KL
    #: tracks this target (Ziegler et al. 2019; unset = fixed beta).
    target_kl: Optional[float] = None
    #: how fast the adaptive beta moves (optimizer steps for a change of at most 20 %).
    kl_horizon: float = 10.0
    #: bounds of the adaptive beta (unset = unbounded): ``kl_beta_max`` caps how far it may climb
    #: (e.g. at its start value, so the controller may only loosen the KL), ``kl_beta_min`` floors it.
    kl_beta_min: Optional[float] = None
    kl_beta_max: Optional[float] = None
    #: GRPO-Guard's RatioNorm: clip the bias- and scale-normalised ratio (rollouts keep their transition means).
    ratio_norm: bool = False
    #: GRPO-Guard's gradient reweighting across steps: the policy loss of each step times ``1 / |dt|``
    #: (its flow-time step; ``diffalign.losses.step_reweight``); the KL term is not reweighted. SDE only.
    step_reweight: bool = False


@dataclass
class D3POLossConfig:
    """``loss:`` of D3PO: ``diffalign.losses.d3po_loss``'s ``beta`` (KL weight) and ``eps`` (ratio clip)."""

    beta: float = 0.1
    eps: float = 0.1


@dataclass
class RewardLossConfig:
    """``loss:`` of the reward-gradient trainers (``diffalign.losses.reward_loss``): ``kind``
    ``negative`` (-r), ``target_l1`` (|r - target|) or ``hinge`` (relu(target - r)), times ``scale``."""

    kind: str = choice("negative", REWARD_LOSS_KINDS)
    target: Optional[float] = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.kind not in REWARD_LOSS_KINDS:
            raise ValueError(f"loss.kind={self.kind!r}; expected one of {', '.join(REWARD_LOSS_KINDS)}")
        if self.kind != "negative" and self.target is None:
            raise ValueError(f"loss.kind={self.kind} needs loss.target")


@dataclass
class OnlineConfig(TrainConfig):
    """Fields every online trainer has."""

    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    #: save a grid of the iteration's rollouts with their rewards every N iterations (0 = never).
    sample_grid_every: int = 1
    sample_grid_size: int = 16


@dataclass
class AdvantagesConfig:
    """``advantages:`` of the policy-gradient trainers that normalise rewards (DDPO, Flow-GRPO)."""

    #: several rewards (``reward.name: weighted_sum``): normalise each component on its own (Flow-GRPO:
    #: within its prompt group; DDPO: one per-prompt stat tracker per component) and sum the
    #: normalised advantages with the components' weights, instead of normalising the weighted sum.
    per_reward: bool = False


@dataclass
class PolicyGradientConfig(OnlineConfig):
    """Shared by the trainers that replay stored transitions (DDPO, D3PO, Flow-GRPO).

    Every trained timestep of a micro-batch is one forward and one backward, accumulated into the
    optimizer step: peak memory does not grow with the number of trained timesteps.
    """

    #: passes over the iteration's rollouts.
    num_inner_epochs: int = 1
    #: fraction of each trajectory's steps trained on.
    timestep_fraction: float = 1.0
    #: classifier-free guidance in the training forward (both branches, as in sampling).
    train_cfg: bool = True
    advantages: AdvantagesConfig = field(default_factory=AdvantagesConfig)


@dataclass
class DDPOConfig(PolicyGradientConfig):
    """DDPO (Black et al., ICLR 2024; kvablack/ddpo-pytorch): PPO on the DDIM-with-eta chain.

    Per iteration and process: ``sampling.batch_size x sampling.num_batches`` rollouts; per inner
    epoch, samples shuffled and cut into micro-batches of ``batch_size``, the time axis shuffled per
    sample and the first ``int(num_inference_steps x timestep_fraction)`` steps trained;
    ``gradient_accumulation_steps`` micro-batches per optimizer step. Advantages: the per-prompt
    stat tracker (or global normalisation).
    """

    renamed_keys: ClassVar[dict[str, str]] = _PPO_RENAMED

    trainer: str = "ddpo"
    loss: PPOLossConfig = field(default_factory=PPOLossConfig)
    per_prompt_stat_tracking: bool = True
    tracker_buffer_size: int = 16
    tracker_min_count: int = 16
    #: rollouts per prompt within a sampling batch (the K-repeat sampler, as Flow-GRPO's groups).
    #: 1 = ddpo-pytorch (independent prompt draws); with K >= ``tracker_min_count`` a prompt's
    #: rewards are normalised against its own samples from the first iteration on.
    group_size: int = 1
    #: the last N denoising steps are never trained (``timestep_fraction`` applies to the others;
    #: 0 = every step, as ddpo-pytorch). A DDIM chain ending next to t = 0 has near-deterministic
    #: final transitions (10 linear-beta steps: std 0.015 from t=101 to 1, 0.3-0.9 before) whose
    #: 1/std-scaled log-prob gradient can swamp the update while barely changing the image
    #: (docs/online.md; Flow-GRPO never trains its last step for the same reason).
    exclude_final_steps: int = 0


@dataclass
class D3POConfig(PolicyGradientConfig):
    """D3PO (Yang et al., CVPR 2024; yk7333/d3po): pairs of rollouts from the same prompt and initial
    noise, the better-rewarded one preferred, a per-step DPO loss against the frozen reference.

    ``sampling.batch_size`` counts rollouts (two per pair, so it must be even); ``batch_size`` counts
    pairs per micro-batch. Ties carry no gradient (loss log 2), as in the reference code.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"beta": "loss.beta", "eps": "loss.eps"}

    trainer: str = "d3po"
    loss: D3POLossConfig = field(default_factory=D3POLossConfig)
    #: the last N denoising steps are never trained (0 = every step, as the reference code); see
    #: ``DDPOConfig.exclude_final_steps``.
    exclude_final_steps: int = 0


@dataclass
class FlowGRPOConfig(PolicyGradientConfig):
    """Flow-GRPO (Liu et al., NeurIPS 2025; yifan123/flow_grpo) for rectified-flow families.

    Groups of ``group_size`` rollouts per prompt, spread over processes by the K-repeat sampler;
    group-relative advantages; PPO with a KL penalty (``loss.beta``) to the same network with adapters
    disabled. Training micro-batches are the sampling batches (micro-batch = sampling batch size, as
    the reference code keeps them to avoid batch-size-dependent outputs);
    ``gradient_accumulation_steps`` sampling batches per optimizer step (``batch_size`` is unused).
    ``sde_window_size > 0`` is the Fast variant: per sampling batch a window of that many
    consecutive steps starting uniformly in ``[lo, hi - size]`` of ``sde_window_range`` is sampled
    with the SDE, every other step with the ODE, and only the window is stored and trained.
    """

    renamed_keys: ClassVar[dict[str, str]] = {**_PPO_RENAMED, "beta": "loss.beta"}

    trainer: str = "flow_grpo"
    group_size: int = 4
    #: std over all rewards of the iteration (True, the SD3 configs) or within each group.
    global_std: bool = True
    advantage_eps: float = 1e-4
    loss: FlowGRPOLossConfig = field(default_factory=FlowGRPOLossConfig)
    #: ``sde`` (flow SDE) or ``cps`` (coefficients-preserving sampling).
    sde_type: str = choice("sde", ("sde", "cps"))
    #: CPS only: Flow-GRPO's un-normalised log-prob (its clip ranges were tuned on it).
    cps_reference_log_prob: bool = False
    sde_window_size: int = 0
    sde_window_range: list[int] = field(default_factory=lambda: [0, 5])
    timestep_fraction: float = 0.99
    #: all members of a group start from the same initial noise.
    same_latent: bool = False
    #: the unconditional branch of the training CFG forward without gradient (July-2025 reference).
    detach_uncond: bool = False
    #: drop samples whose advantage is exactly 0 (zero-variance groups) before training.
    drop_zero_advantage: bool = True
    ema: bool = True
    ema_decay: float = 0.9
    ema_update_interval: int = 8


@dataclass
class RewardGradientConfig(OnlineConfig):
    """Shared by the trainers that back-propagate a differentiable reward (AlignProp, DRaFT, ReFL).

    Per iteration: ``gradient_accumulation_steps`` micro-batches of ``sampling.batch_size`` fresh
    rollouts (strictly on-policy, nothing stored), one optimizer step. ``sampling.num_batches`` is
    unused. Each denoiser call that keeps the graph is gradient-checkpointed when
    ``checkpoint_steps`` is on, so memory grows only by one latent per back-propagated step.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"loss_target": "loss.target", "loss_scale": "loss.scale"}

    loss: RewardLossConfig = field(default_factory=RewardLossConfig)
    checkpoint_steps: bool = True


@dataclass
class AlignPropConfig(RewardGradientConfig):
    """AlignProp (Prabhudesai et al., 2023; mihirp1998/AlignProp): randomised truncated back-prop.

    Per micro-batch a cut-off index ``c`` of the sampling loop (0 = noisiest step) is drawn: the
    denoiser outputs of steps ``i < c`` are constants, steps ``i >= c`` keep the graph (``K = N - c``
    steps back-propagated). ``truncation``: ``gaussian`` (``c = int(N(mean, std))``), ``uniform``
    (``c`` in ``[min, max)``) or ``fixed`` (``c = index``); redrawn until ``1 <= c < N``.
    """

    trainer: str = "alignprop"
    truncation: str = choice("gaussian", TRUNCATIONS)
    truncation_mean: float = 42.0
    truncation_std: float = 5.0
    truncation_min: int = 0
    truncation_max: int = 50
    truncation_index: int = 49


@dataclass
class DRaFTConfig(RewardGradientConfig):
    """DRaFT (Clark et al., ICLR 2024): back-prop through the last ``backprop_steps`` steps (0 = the
    whole chain: plain DRaFT; K: DRaFT-K). ``lv_samples = n > 0`` is DRaFT-LV (K must be 1): the
    final sample is re-noised ``n`` times to the last step's noise level and denoised in one step
    with gradient; the loss averages the ``n`` estimates."""

    trainer: str = "draft"
    backprop_steps: int = 1
    lv_samples: int = 0


@dataclass
class ReFLConfig(RewardGradientConfig):
    """ReFL (Xu et al., NeurIPS 2023; THUDM/ImageReward): sample without gradient up to a random
    late step ``i`` in ``[step_min, step_max]`` (sampling-loop index), one denoiser call there with
    gradient, score the network's predicted clean sample. Defaults from ReFL: 40 steps, i in
    [30, 39], no CFG, hinge loss at 2 scaled by 1e-3."""

    trainer: str = "refl"
    step_min: int = 30
    step_max: int = 39
    loss: RewardLossConfig = field(default_factory=lambda: RewardLossConfig(kind="hinge", target=2.0, scale=1e-3))


__all__ = [
    "AdvantagesConfig",
    "AlignPropConfig",
    "D3POConfig",
    "D3POLossConfig",
    "DDPOConfig",
    "DRaFTConfig",
    "EvaluationConfig",
    "FlowGRPOConfig",
    "FlowGRPOLossConfig",
    "OnlineConfig",
    "PPOLossConfig",
    "PolicyGradientConfig",
    "PromptsConfig",
    "ReFLConfig",
    "RewardConfig",
    "RewardGradientConfig",
    "RewardLossConfig",
    "SamplingConfig",
]
