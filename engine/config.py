"""Frozen configuration dataclasses and the named presets.

Every stage of the pipeline takes one of these. They serialise to plain JSON dicts
(``to_dict`` / ``from_dict``) so that a bundle records exactly how it was made and the app can
persist the last training setup. Presets live in ``resources/presets.json`` (one place for all of
them); ``preset(name)`` returns a ``RunConfig``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from engine.resources import read_text
from engine.errors import UserError

__all__ = [
    "CorpusConfig", "TokenizerConfig", "ModelConfig", "TrainConfig", "SAEConfig",
    "HarvestConfig", "RunConfig", "preset", "preset_family", "parse_sizes", "parse_seeds", "preset_names",
    "ConfigError", "SAE_RECIPES", "RecipeInfo", "SAE_RECIPE_INFO", "SAE_ARCHITECTURES", "nested_widths",
    "recipe_setting", "PRECISIONS", "RULES", "Rule", "Check", "check_section", "DEVICES",
    "is_device_name",
]


@dataclass(frozen=True)
class RecipeInfo:
    """What every face of the program (CLI, Train dialog, presets, bundle, exports) needs to know about
    a recipe; the trainer itself is ``engine.train.recipes.RECIPES[name]``."""

    label: str                     # shown in the Train dialog
    architecture: str              # the trained SAE's encoder, one of SAE_ARCHITECTURES (engine.sae)
    knob: str | None               # the SAEConfig field the Train dialog shows for this recipe
    params: tuple[str, ...]        # the SAEConfig fields the recipe reads beyond the shared ones


# The encoders a stored SAE can have (engine/sae.py): f = ReLU(pre) | ReLU(TopK_k(pre)) | pre·[pre > θ],
# and "gated" (Rajamanoharan et al. 2024), which only imported SAEs have (no recipe trains it)
SAE_ARCHITECTURES = ("relu", "topk", "jumprelu", "gated")

# The recipe registry, in the order the CLI and the Train dialog offer them (the first is the default).
SAE_RECIPE_INFO: dict[str, RecipeInfo] = {
    "topk": RecipeInfo("TopK (Gao et al. 2024)", "topk", "k", ("k", "aux_k", "aux_coeff")),
    "2024-04": RecipeInfo("L1 with decoder norms (April 2024 update)", "relu", "l1_coeff", ("l1_coeff", "grad_clip")),
    "2023": RecipeInfo("L1, as in the paper (2023)", "relu", "l1_coeff", ("l1_coeff",)),
    "jumprelu": RecipeInfo("JumpReLU with L0 (Rajamanoharan et al. 2024)", "jumprelu", "l0_coeff",
                           ("l0_coeff", "jumprelu_bandwidth", "jumprelu_init_threshold", "pre_act_coeff")),
    "batchtopk": RecipeInfo("BatchTopK (Bussmann et al. 2024)", "jumprelu", "k",
                            ("k", "aux_k", "aux_coeff", "topk_threshold_lr")),
    "matryoshka": RecipeInfo("Matryoshka BatchTopK (Bussmann et al. 2025)", "jumprelu", "k",
                             ("k", "aux_k", "aux_coeff", "topk_threshold_lr", "matryoshka_widths")),
}
SAE_RECIPES = tuple(SAE_RECIPE_INFO)
PRECISIONS = ("auto", "fp32", "bf16")   # --precision: what the model trains in (engine/train/accel.py)
MATRYOSHKA_LEVELS = 5              # default nested widths: F/16, F/8, F/4, F/2, F (engine/train/recipes/matryoshka.py)


class ConfigError(UserError, ValueError):
    """A configuration value a user supplied is invalid; the message says which and why.

    ``field`` is the setting's ``section.key`` (e.g. ``"model.n_heads"``) where one is to blame, so
    a driver can point at its own name for it (a CLI flag, a dialog field)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class _Config:
    """Mixin: JSON round-trip that ignores unknown keys from newer versions and nests dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None):
        data = dict(data or {})
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            value = data[f.name]
            sub = _NESTED.get((cls.__name__, f.name))
            if sub is not None and isinstance(value, dict):
                value = sub.from_dict(value)
            elif isinstance(value, list):  # JSON has no tuples (e.g. betas)
                value = tuple(value)
            kwargs[f.name] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - defensive
            raise ConfigError(f"invalid {cls.__name__}: {exc}") from None

    def replace(self, **changes):
        return replace(self, **changes)  # type: ignore[type-var]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass(frozen=True)
class CorpusConfig(_Config):
    spec: str = "builtin"          # builtin | PATH (file/folder/.jsonl) | hf:NAME[:split]
    seed: int = 0                  # built-in generation and train/val split
    val_fraction: float = 0.05     # fraction of documents held out
    max_chars: int | None = None   # cap on total text (None: everything)


@dataclass(frozen=True)
class TokenizerConfig(_Config):
    vocab_size: int = 4096
    path: str | None = None        # load this tokenizer.json instead of training one
    train_chars: int = 8_000_000   # characters of the corpus used to train the BPE


MODEL_ACT_FNS = ("relu", "gelu", "gelu_new", "solu_ln")


@dataclass(frozen=True)
class ModelConfig(_Config):
    vocab_size: int = 4096
    n_ctx: int = 128
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    # variants a loaded TransformerLens one-layer model needs (engine/interop/transformer_lens.py);
    # models superpos trains keep the defaults
    act_fn: str = "relu"           # one of MODEL_ACT_FNS; the neurons are the output of this (TL hook_post)
    d_head: int = 0                # per-head width; 0: d_model / n_heads
    shortformer: bool = False      # positions feed queries and keys only, not the residual stream
    unembed_bias: bool = False     # the unembedding has a bias b_U

    def __post_init__(self):
        check_section(self, "model", invariants_only=True)

    @property
    def head_dim(self) -> int:
        """The width of one attention head."""
        return self.d_head or self.d_model // self.n_heads


@dataclass(frozen=True)
class TrainConfig(_Config):
    tokens: int = 4_000_000        # training budget in tokens
    batch_size: int = 32           # sequences per step (tokens/step = batch_size * n_ctx)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1      # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100          # steps between validation estimates
    eval_batches: int = 8
    checkpoint_every: int = 200    # steps between checkpoints
    seed: int = 0


@dataclass(frozen=True)
class SAEConfig(_Config):
    recipe: str = "topk"           # one of SAE_RECIPES
    d_in: int = 512
    d_sae: int = 4096
    k: int = 20                    # topk: active latents per token
    aux_k: int = 512               # topk: dead latents used by the AuxK loss
    aux_coeff: float = 1 / 32
    l1_coeff: float = 5.0          # 2023: lambda on ||f||_1 ; 2024-04: lambda on sum f_i ||W_dec,i||
    l0_coeff: float = 0.5          # jumprelu: lambda on ||f||_0 (sources: engine/train/recipes/jumprelu.py)
    jumprelu_bandwidth: float = 0.05      # jumprelu: width of the straight-through estimator's window
    jumprelu_init_threshold: float = 1.5   # jumprelu: every threshold's starting value
    pre_act_coeff: float = 3e-4    # jumprelu: dead latents' pre-activation loss (0: off)
    topk_threshold_lr: float = 0.01  # batchtopk / matryoshka: EMA rate of the inference threshold
    matryoshka_widths: tuple[int, ...] = ()  # matryoshka: nested prefix widths, increasing, last = d_sae
                                   # (empty: d_sae/16, /8, /4, /2, d_sae)
    lr: float = 2e-3
    batch_size: int = 4096
    n_activations: int = 2_000_000  # training budget in activation vectors
    buffer_batches: int = 16       # shuffling buffer size, in batches
    dead_window: int = 200_000     # activations without firing after which a latent counts as dead
                                   # (topk: AuxK trains it; 10% of the demo run, see docs/sae-results.md)
    cooldown_fraction: float = 0.2  # linear LR decay over the last fraction (2024-04, topk)
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    seed: int = 0
    # an SAE loaded from another library (engine/interop/sae_formats.py): its encoder and where it
    # came from; "" for SAEs superpos trains (the encoder is then the recipe's)
    architecture: str = ""         # "" or one of SAE_ARCHITECTURES
    source: str = ""               # e.g. "saelens:/path/to/folder"

    def __post_init__(self):
        check_section(self, "sae", invariants_only=True)

    def validate(self) -> "SAEConfig":
        """Every rule of ``RULES["sae"]`` (ranges, k <= d_sae, one step of budget); ``ConfigError``
        naming the setting. Returns self."""
        check_section(self, "sae")
        return self


def nested_widths(cfg: SAEConfig) -> tuple[int, ...]:
    """The nested prefix widths of a matryoshka SAE: cfg.matryoshka_widths, or by default MATRYOSHKA_LEVELS
    doubling widths ending at d_sae (d_sae/16, /8, /4, /2, d_sae; fewer when d_sae is small)."""
    F = cfg.d_sae
    try:
        widths = tuple(int(w) for w in cfg.matryoshka_widths)
    except (TypeError, ValueError):
        raise ConfigError(f"matryoshka widths must be a list of integers, not {cfg.matryoshka_widths!r}",
                          "sae.matryoshka_widths") from None
    if not widths:
        widths = tuple(sorted({max(1, F >> i) for i in range(MATRYOSHKA_LEVELS)}))
    if any(b <= a for a, b in zip(widths, widths[1:])) or widths[0] <= 0 or widths[-1] != F:
        raise ConfigError(f"matryoshka widths {list(widths)} must increase strictly from >= 1 and end at "
                          f"d_sae ({F})", "sae.matryoshka_widths")
    return widths


def recipe_setting(cfg: SAEConfig) -> str:
    """The recipe's knob as people write it: "k = 20", "λ = 5", "L0 λ = 1.5"; matryoshka adds its widths."""
    knob = SAE_RECIPE_INFO[cfg.recipe].knob
    text = {"k": f"k = {cfg.k}", "l1_coeff": f"λ = {cfg.l1_coeff:g}", "l0_coeff": f"L0 λ = {cfg.l0_coeff:g}"}.get(knob, "")
    if cfg.recipe == "matryoshka":
        text += f", prefixes {'/'.join(str(w) for w in nested_widths(cfg))}"
    return text


@dataclass(frozen=True)
class HarvestConfig(_Config):
    n_tokens: int = 200_000        # held-out tokens scanned for statistics
    eval_tokens: int = 100_000     # held-out tokens for the evaluation metrics
    top_k: int = 20                # top examples per unit
    n_intervals: int = 10          # subsample intervals
    per_interval: int = 5          # examples per interval
    ctx_left: int = 10             # tokens shown before the example's token
    ctx_right: int = 5             # tokens shown after it
    hist_bins: int = 40
    n_logits: int = 10             # top and bottom logit effects
    n_align: int = 8               # neuron alignment / correlated neurons / loading features
    sample_tokens: int = 8192      # paired feature/neuron sample (whole contexts at random) for scatter plots
    seed: int = 0


@dataclass(frozen=True)
class RunConfig(_Config):
    name: str = "demo"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    harvest: HarvestConfig = field(default_factory=HarvestConfig)
    device: str = "auto"           # auto | cuda | cuda:N | mps | cpu
    precision: str = "auto"        # one of PRECISIONS (auto: bf16 autocast on a CUDA GPU with bf16, else fp32)
    compile: bool = False          # torch.compile the transformer (CUDA only; engine/train/accel.py)

    def __post_init__(self):
        if self.model.vocab_size != self.tokenizer.vocab_size and self.tokenizer.path is None:
            object.__setattr__(self, "model", replace(self.model, vocab_size=self.tokenizer.vocab_size))
        if self.sae.d_in != self.model.d_mlp:
            object.__setattr__(self, "sae", replace(self.sae, d_in=self.model.d_mlp))

    def validate(self) -> "RunConfig":
        """Check every setting against its allowed range, and the rules that tie sections together;
        raise ``ConfigError`` naming the first bad one (``field``: ``section.key``). Returns self.

        The one check shared by the CLI (before any work), the Train dialog (before it starts) and
        the presets (a test); the table is ``RULES`` below."""
        _validate_run(self)
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> "RunConfig":
        """Return a copy with ``section={key: value}`` overrides applied (top-level keys too)."""
        data = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                unknown = set(value) - set(data[key])
                if unknown:
                    raise ConfigError(f"unknown {key} setting(s): {', '.join(sorted(unknown))}")
                data[key].update(value)
            elif key in data:
                data[key] = value
            else:
                raise ConfigError(f"unknown setting {key!r}")
        return RunConfig.from_dict(data)


_NESTED = {
    ("RunConfig", "corpus"): CorpusConfig,
    ("RunConfig", "tokenizer"): TokenizerConfig,
    ("RunConfig", "model"): ModelConfig,
    ("RunConfig", "train"): TrainConfig,
    ("RunConfig", "sae"): SAEConfig,
    ("RunConfig", "harvest"): HarvestConfig,
}


def _is_int(value: Any) -> bool:
    """An integer (numpy's too: sizes often come from array shapes), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


DEVICES = ("auto", "cpu", "cuda", "mps")    # and cuda:N


def is_device_name(name: Any) -> bool:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (lower case): the one spelling of a device that
    ``--device``, the config and ``engine.device.resolve_device`` accept."""
    return isinstance(name, str) and (name in DEVICES or re.fullmatch(r"cuda:\d+", name) is not None)


# ====================================================================== the rules, once
# Every check of a setting lives in ``RULES`` below, once. A rule marked ``invariant`` is one the
# dataclass cannot exist without (a zero head count would divide by zero later): ``__post_init__``
# checks those; ``validate()`` checks all of them, before any work (the CLI, the Train dialog, the
# pipeline). tests/engine/test_config_validation.py checks that no check is written twice.
@dataclass(frozen=True)
class Rule:
    """``key`` of a section is an integer (``integer=True``) or a finite number in [lo, hi]
    (``lo_open``: lo itself excluded; None: unbounded); ``optional``: None is allowed too."""
    key: str
    what: str
    lo: float | None = None
    hi: float | None = None
    integer: bool = True
    lo_open: bool = False
    optional: bool = False
    invariant: bool = False

    @property
    def name(self) -> str:
        return self.key

    def range_text(self) -> str:
        fmt = (lambda v: f"{int(v):,}") if self.integer else (lambda v: f"{v:g}")
        if self.lo is not None and self.hi is not None and not self.lo_open:
            return f"from {fmt(self.lo)} to {fmt(self.hi)}"
        parts = []
        if self.lo is not None:
            parts.append(f"greater than {fmt(self.lo)}" if self.lo_open else f"at least {fmt(self.lo)}")
        if self.hi is not None:
            parts.append(f"at most {fmt(self.hi)}")
        return " and ".join(parts)

    def check(self, section: str, part: Any) -> None:
        value = getattr(part, self.key)
        if value is None and self.optional:
            return
        ok = _is_int(value) if self.integer else (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value))
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value <= self.hi
        if not ok:
            kind = "an integer" if self.integer else "a finite number"
            raise ConfigError(f"{section}.{self.key} ({self.what}) must be {kind} {self.range_text()}; "
                              f"got {value!r}", f"{section}.{self.key}")


@dataclass(frozen=True)
class Check:
    """A rule a range cannot say: ``ok(part)`` must hold (``part``: the section's config; for the
    ``"run"`` section the whole ``RunConfig``), else ``ConfigError(message(part), field)``. ``name``
    tells checks of one field apart."""
    field: str
    name: str
    ok: Callable[[Any], bool]
    message: Callable[[Any], str]
    invariant: bool = False

    def check(self, section: str, part: Any) -> None:
        if not self.ok(part):
            raise ConfigError(self.message(part), self.field)


def _k_fits(s: "SAEConfig") -> bool:
    return SAE_RECIPE_INFO[s.recipe].knob != "k" or (_is_int(s.k) and 0 < s.k <= s.d_sae)


def _matryoshka_ok(s: "SAEConfig") -> bool:
    """``nested_widths`` raises the ConfigError itself, saying what is wrong with the widths."""
    return s.recipe != "matryoshka" or bool(nested_widths(s))


_SEED = Rule("seed", "random seed", 0, 2**32 - 1)
_BIG = 10**13                     # budgets: far beyond any run, small enough to catch a typo'd exponent
RULES: dict[str, tuple[Rule | Check, ...]] = {
    "corpus": (_SEED, Rule("val_fraction", "held-out fraction", 0, 0.5, integer=False, lo_open=True),
               Rule("max_chars", "characters of the corpus used", 1, _BIG, optional=True)),
    "tokenizer": (Rule("vocab_size", "BPE vocabulary size", 258, 1 << 20),
                  Rule("train_chars", "characters used to train the BPE", 1, _BIG)),
    "model": (Rule("vocab_size", "vocabulary size", 2, 1 << 20, invariant=True),
              Rule("n_ctx", "context length", 2, 1 << 16, invariant=True),
              Rule("d_model", "residual width", 1, 1 << 16, invariant=True),
              Rule("n_heads", "attention heads", 1, 1 << 10, invariant=True),
              Rule("d_mlp", "MLP neurons", 1, 1 << 20, invariant=True),
              Rule("d_head", "per-head width, 0: d_model / n_heads", 0, 1 << 16, invariant=True),
              Check("model.act_fn", "act_fn", lambda m: m.act_fn in MODEL_ACT_FNS,
                    lambda m: f"model.act_fn must be one of {', '.join(MODEL_ACT_FNS)}; got {m.act_fn!r}",
                    invariant=True),
              Check("model.n_heads", "heads divide d_model", lambda m: bool(m.d_head) or m.d_model % m.n_heads == 0,
                    lambda m: f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})",
                    invariant=True)),
    "train": (Rule("tokens", "training budget in tokens", 1, _BIG),
              Rule("batch_size", "sequences per step", 1, 1 << 20),
              Rule("lr", "peak learning rate", 0, 10, integer=False, lo_open=True),
              Rule("min_lr_ratio", "final / peak learning rate", 0, 1, integer=False),
              Rule("warmup_steps", "warm-up steps", 0, _BIG), Rule("weight_decay", "weight decay", 0, 100, integer=False),
              Rule("grad_clip", "gradient-norm clip", 0, 1e6, integer=False, lo_open=True),
              Rule("eval_every", "steps between validation estimates", 1, _BIG),
              Rule("eval_batches", "validation batches", 1, 1 << 20),
              Rule("checkpoint_every", "steps between checkpoints", 1, _BIG), _SEED),
    "sae": (Check("sae.architecture", "architecture", lambda s: not s.architecture or s.architecture in SAE_ARCHITECTURES,
                  lambda s: f"unknown SAE architecture {s.architecture!r}; one of {', '.join(SAE_ARCHITECTURES)}",
                  invariant=True),
            Check("sae.recipe", "recipe", lambda s: s.recipe in SAE_RECIPES,
                  lambda s: f"unknown SAE recipe {s.recipe!r}; choose one of {', '.join(SAE_RECIPES)}", invariant=True),
            Rule("d_in", "activation width", 1, 1 << 20, invariant=True),
            Rule("d_sae", "dictionary size", 1, 1 << 24, invariant=True),
            Check("sae.k", "k fits the dictionary", _k_fits,
                  lambda s: f"sae.k must be an integer from 1 to sae.d_sae ({s.d_sae}); got {s.k!r}", invariant=True),
            Rule("k", "active features per token", 1, 1 << 24),
            Rule("aux_k", "dead latents in the AuxK loss", 0, 1 << 24),
            Rule("aux_coeff", "AuxK loss weight", 0, 1e6, integer=False),
            Rule("l1_coeff", "sparsity penalty lambda", 0, 1e6, integer=False, lo_open=True),
            Rule("l0_coeff", "JumpReLU L0 penalty lambda", 0, 1e6, integer=False, invariant=True),
            Rule("jumprelu_bandwidth", "JumpReLU straight-through bandwidth", 0, 1e3, integer=False, lo_open=True,
                 invariant=True),
            Rule("jumprelu_init_threshold", "JumpReLU initial threshold", 0, 1e3, integer=False, invariant=True),
            Check("sae.matryoshka_widths", "nested widths", _matryoshka_ok, lambda s: "", invariant=True),
            Rule("lr", "learning rate", 0, 10, integer=False, lo_open=True),
            Rule("batch_size", "activation vectors per step", 1, 1 << 24),
            Rule("n_activations", "training budget in activation vectors", 1, _BIG),
            Check("sae.n_activations", "one step of budget", lambda s: s.n_activations >= s.batch_size,
                  lambda s: f"sae.n_activations (training budget in activation vectors) must be at least one step, "
                            f"sae.batch_size = {s.batch_size:,}; got {s.n_activations:,}"),
            Rule("buffer_batches", "shuffling buffer, in batches", 1, 1 << 16),
            Rule("dead_window", "activations before a silent latent is dead", 1, _BIG),
            Rule("cooldown_fraction", "fraction of the run with a decaying learning rate", 0, 1, integer=False),
            Rule("grad_clip", "gradient-norm clip", 0, 1e6, integer=False, lo_open=True),
            Rule("checkpoint_every", "steps between checkpoints (0: none)", 0, _BIG), _SEED),
    "harvest": (Rule("n_tokens", "held-out tokens scanned for statistics", 1, _BIG),
                Rule("eval_tokens", "held-out tokens for the evaluation", 1, _BIG),
                Rule("top_k", "top examples per unit", 1, 10_000),
                Rule("n_intervals", "activation intervals", 1, 1_000),
                Rule("per_interval", "examples per interval", 1, 1_000),
                Rule("ctx_left", "tokens before an example", 0, 1 << 16),
                Rule("ctx_right", "tokens after an example", 0, 1 << 16),
                Rule("hist_bins", "histogram bins", 2, 100_000), Rule("n_logits", "logit effects shown", 1, 10_000),
                Rule("n_align", "aligned units kept", 1, 10_000),
                Rule("sample_tokens", "tokens in the scatter sample", 1, 10_000_000), _SEED),
    # the rules that tie sections together, on the whole RunConfig
    "run": (Check("device", "device", lambda c: is_device_name(c.device),
                  lambda c: f"device must be auto, cpu, cuda, cuda:N or mps; got {c.device!r}"),
            Check("precision", "precision", lambda c: c.precision in PRECISIONS,
                  lambda c: f"precision must be one of {', '.join(PRECISIONS)}; got {c.precision!r}"),
            Check("compile", "compile", lambda c: isinstance(c.compile, bool),
                  lambda c: f"compile must be true or false; got {c.compile!r}"),
            Check("train.tokens", "one step of budget", lambda c: c.train.tokens >= c.train.batch_size * c.model.n_ctx,
                  lambda c: f"train.tokens (training budget in tokens) must be at least one step, train.batch_size x "
                            f"model.n_ctx = {c.train.batch_size * c.model.n_ctx:,}; got {c.train.tokens:,}"),
            *(Check(f"harvest.{key}", "one context window", lambda c, key=key: getattr(c.harvest, key) >= c.model.n_ctx,
                    lambda c, key=key: f"harvest.{key} must be at least one context window, model.n_ctx = "
                                       f"{c.model.n_ctx}; got {getattr(c.harvest, key):,}")
              for key in ("n_tokens", "eval_tokens"))),
}


def check_section(part: Any, section: str, invariants_only: bool = False) -> None:
    """Apply ``RULES[section]`` to ``part`` in table order (only the invariants, from ``__post_init__``);
    the first failure raises ``ConfigError`` naming its setting."""
    for rule in RULES[section]:
        if rule.invariant or not invariants_only:
            rule.check(section, part)


def _validate_run(cfg: "RunConfig") -> None:
    for section in RULES:
        check_section(cfg if section == "run" else getattr(cfg, section), section)


def _presets() -> dict[str, dict[str, Any]]:
    return json.loads(read_text("presets.json"))


def preset_names() -> list[str]:
    return [name for name in _presets() if not name.startswith("_")]


def preset(name: str = "demo") -> RunConfig:
    """The named preset as a RunConfig (``tiny`` for tests, ``demo`` the default, ``paper`` for a GPU)."""
    presets = _presets()
    if name not in presets or name.startswith("_"):
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    data = dict(presets[name])
    for key in ("description", "measured", "family"):
        data.pop(key, None)
    return RunConfig.from_dict({"name": name, **data})


def parse_sizes(text: str) -> tuple[int, ...]:
    """"512, 2048,4096" -> (512, 2048, 4096): distinct dictionary sizes (each checked by validate)."""
    try:
        sizes = tuple(int(part) for part in str(text).replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(f"expected sizes like 4096 or 512,4096,16384, not {text!r}", "family.sizes") from None
    if not sizes or len(set(sizes)) != len(sizes):
        raise ConfigError(f"expected distinct sizes like 4096 or 512,4096,16384, not {text!r}", "family.sizes")
    return sizes


def parse_seeds(text: str) -> tuple[int, ...]:
    """"0,1" -> (0, 1): the two model seeds of a universality family."""
    try:
        seeds = tuple(int(part) for part in str(text).replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(f"expected two seeds like 0,1, not {text!r}", "family.model_seeds") from None
    if len(seeds) != 2 or seeds[0] == seeds[1] or min(seeds) < 0:
        raise ConfigError(f"expected two different non-negative seeds like 0,1, not {text!r}", "family.model_seeds")
    return seeds


def preset_family(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(dictionary sizes, model seeds) a family preset trains (``demo-family``); ((), ()) for the others."""
    family = _presets().get(name, {}).get("family", {})
    return tuple(int(d) for d in family.get("d_sae", ())), tuple(int(s) for s in family.get("model_seeds", ()))


def preset_measurement(name: str) -> dict[str, Any]:
    """The preset's ``"measured"`` record (machine, stage_seconds), {} if none (engine.run_clock)."""
    return dict(_presets().get(name, {}).get("measured", {}))


def preset_description(name: str) -> str:
    return _presets().get(name, {}).get("description", "")
