"""Typed run configuration: dataclasses, presets as functions, YAML + `--set` overrides, validate().

A run directory holds one `mmkd.yaml` (a `RunConfig`). Presets are plain functions (no YAML
inheritance): `epic100_teacher()` etc. return the paper's values, `demo_*()` the
built-in dataset's. Overrides apply on top (`--set student.train.lr_max=2e-4`) and `validate()`
reports every problem at once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmkd.errors import ConfigError, MmkdError
from mmkd.files import read_text

MODALITIES = ("video", "flow", "audio", "detection")
MISSING_STRATEGIES = ("B1", "B2", "B3", "B4", "B5", "none")
SCHEDULES = ("cosine", "poly")  # train.schedule, see `train.loop.lr_at`
PROTOCOLS = ("subsets", "missing-rate", "efficiency", "ablations")  # `mmkd eval --protocol`
CONFIG_FILE = "mmkd.yaml"


@dataclass
class DataConfig:
    """Where the dataset lives and which modalities/heads a run uses."""

    dataset: str = "demo"  # a name in registry.datasets: epic100, ssv2, custom, demo
    annotations: str = ""  # folder (or file) with the official annotation files
    media_root: str = ""  # root of the raw media (EPIC layout, SSv2 webm folder, ...)
    manifest_dir: str = "manifest"  # relative to the run dir unless absolute
    modalities: list[str] = field(default_factory=lambda: ["video", "flow", "audio"])
    heads: list[str] = field(default_factory=lambda: ["verb", "noun"])


@dataclass
class ClipConfig:
    """One clip-sampling policy shared by all modalities of a sample."""

    num_frames: int = 32
    frame_stride: int = 2
    sampling: str = "k400"  # k400: contiguous frames at a stride around the centre; uniform
    audio_window_s: float = 1.0  # log-mel window around each sampled frame (audio teacher)


@dataclass
class ExtractConfig:
    """Stage 1: frozen extractors over the media, written into the cache."""

    theta: int = 300  # Θ-Average threshold (0 = keep all tokens)
    batch_size: int = 8
    workers: int = 2  # decode worker processes
    device: str = "cpu"
    shard_size: int = 128  # samples per Zarr shard (64–256)
    strict: bool = False  # any media failure is fatal


@dataclass
class FusionConfig:
    """Fusion block + MH-MLP."""

    width: int = 768  # d
    layers: int = 2  # l
    heads: int = 8
    attn_dropout: float = 0.3
    missing_strategy: str = "B5"
    mlp_hidden: int = 768


@dataclass
class TrainConfig:
    """Optimisation recipe; a method's loss weights are in its own config."""

    epochs: int = 100
    batch_size: int = 32
    lr_min: float = 1e-5
    lr_max: float = 5e-4
    warmup_epochs: float = 10
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    modality_dropout: float = 0.0
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    schedule: str = "cosine"  # cosine: lr_min → lr_max over the warm-up, cosine to lr_min;
    # poly: warmup_factor × lr_max during the warm-up, then lr_max·(1-progress)^poly_power → lr_min
    poly_power: float = 0.9
    warmup_factor: float = 0.1  # poly only
    adam_eps: float = 1e-8


@dataclass
class RecipeConfig:
    """One model role (teacher or student): extractor per modality, fusion block, training."""

    name: str = "teacher"
    extractors: dict[str, str] = field(default_factory=dict)  # modality -> registry name
    weights: dict[str, str] = field(default_factory=dict)  # modality -> local checkpoint
    fusion: FusionConfig = field(default_factory=FusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class PretrainConfig:
    """`mmkd pretrain`: extractors trained on the run's own train split before extraction, for
    datasets without a usable pretrained checkpoint (the demo's video and flow Swins)."""

    modalities: list[str] = field(default_factory=list)  # what `mmkd demo` pretrains (those of
    # data.modalities; others are ignored)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, batch_size=16, lr_min=1e-5, lr_max=2e-3, warmup_epochs=1, weight_decay=0.05,
        grad_clip=1.0))


@dataclass
class AugmentConfig:
    """Train-time augmentation (`mmkd pretrain`, `mmkd finetune`)."""

    # horizontal flips; None: on only where they keep labels true (EPIC, and no class name
    # says left or right; see mmkd.train.augment.resolve_hflip)
    hflip: bool | None = None


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["subsets", "missing-rate"])
    missing_rates: list[float] = field(default_factory=lambda: [i / 10 for i in range(10)])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    split: str = "test"
    robustness_drop: str = ""  # the modality the "kept %" table drops; "": the strongest on val


@dataclass
class RunConfig:
    """Everything a run directory needs; written as `mmkd.yaml` next to every output."""

    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    teacher: RecipeConfig = field(default_factory=RecipeConfig)
    student: RecipeConfig = field(default_factory=lambda: RecipeConfig(name="student"))
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # method name -> overrides of that method's typed config (loss weights, temperature, teacher
    # id), e.g. methods.karmma.lambda_kl; the defaults (the paper's values) live with the method
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def manifest_path(self, run_dir: str | Path) -> Path:
        """`data.manifest_dir`, relative to the run directory unless absolute."""
        p = Path(self.data.manifest_dir)
        return p if p.is_absolute() else Path(run_dir) / p

    def validate(self, extractors: bool = True) -> None:
        """Raise ConfigError listing every problem (field, value, why, what is allowed).

        `extractors=False` skips checking extractor names and method configs against their
        registries, which import torch (seconds): for commands that only read the cache."""
        problems = _problems(self, extractors)
        if problems:
            raise ConfigError(problems)


# ----------------------------------------------------------------------------- presets
def epic100_teacher() -> RecipeConfig:
    """KARMMA_T on EPIC-KITCHENS-100: Swin-B (K400) for V, F and A; d=768, l=2."""
    return RecipeConfig(
        name="teacher",
        extractors={"video": "swin3d_b", "flow": "swin3d_b", "audio": "swin3d_b_audio"},
        fusion=FusionConfig(width=768, layers=2, heads=8, attn_dropout=0.3, mlp_hidden=768),
        train=TrainConfig(epochs=100, batch_size=32, lr_min=1e-5, lr_max=5e-4, warmup_epochs=10,
                          weight_decay=0.05, grad_clip=1.0, modality_dropout=0.0),
    )


def epic100_student() -> RecipeConfig:
    """KARMMA_S on EPIC-KITCHENS-100: Swin-T for V and F, AST-Tiny for A; d=384, l=1."""
    return RecipeConfig(
        name="student",
        extractors={"video": "swin3d_t", "flow": "swin3d_t", "audio": "ast_tiny"},
        fusion=FusionConfig(width=384, layers=1, heads=8, attn_dropout=0.0, mlp_hidden=384),
        train=TrainConfig(epochs=100, batch_size=6, lr_min=1e-5, lr_max=1e-4, warmup_epochs=10,
                          weight_decay=0.01, grad_clip=2.0, modality_dropout=0.5),
    )


def ssv2_teacher() -> RecipeConfig:
    """KARMMA_T on Something-Something v2: Swin-B for V and F, STLT (12 layers) for D."""
    cfg = epic100_teacher()
    cfg.extractors = {"video": "swin3d_b", "flow": "swin3d_b", "detection": "stlt_l12"}
    return cfg


def ssv2_student() -> RecipeConfig:
    """KARMMA_S on Something-Something v2: Swin-T for V and F, STLT (9 layers) for D."""
    cfg = epic100_student()
    cfg.extractors = {"video": "swin3d_t", "flow": "swin3d_t", "detection": "stlt_l9"}
    return cfg


def demo_teacher() -> RecipeConfig:
    """The built-in dataset's teacher: video/flow Swins pretrained on its train split, a random
    audio Swin; a small fusion block, trained on CPU."""
    return RecipeConfig(
        name="teacher",
        extractors={"video": "demo_swin3d_teacher", "flow": "demo_swin3d_teacher",
                    "audio": "demo_swin3d_teacher_audio"},
        fusion=FusionConfig(width=128, layers=2, heads=8, attn_dropout=0.1, mlp_hidden=128),
        train=TrainConfig(epochs=15, batch_size=32, lr_min=1e-5, lr_max=1e-3, warmup_epochs=2,
                          weight_decay=0.05, grad_clip=1.0),
    )


def demo_student() -> RecipeConfig:
    """The built-in dataset's student: smaller pretrained Swins, a random AST, a smaller fusion."""
    return RecipeConfig(
        name="student",
        extractors={"video": "demo_swin3d_student", "flow": "demo_swin3d_student",
                    "audio": "demo_ast_student"},
        fusion=FusionConfig(width=64, layers=1, heads=8, attn_dropout=0.0, mlp_hidden=64),
        train=TrainConfig(epochs=40, batch_size=16, lr_min=1e-5, lr_max=1e-3, warmup_epochs=2,
                          weight_decay=0.01, grad_clip=2.0, modality_dropout=0.5),
    )


def cmpt_audio_video() -> RecipeConfig:
    """CMPT's recipe for audio-video data (Tab. 6 of Reza et al.): AdamW (eps 1e-8, weight decay
    0.02), lr 5e-5 with polynomial decay (power 0.9) after 5 warm-up epochs at 0.1× lr, 100
    epochs, batch 4; EPIC's student extractors and fusion block. Modality dropout is not in
    Tab. 6 (the paper drops one of two modalities or none): the student's 0.5."""
    cfg = epic100_student()
    cfg.train = cmpt_train(lr=5e-5, epochs=100, batch_size=4)
    return cfg


def cmpt_image_text() -> RecipeConfig:
    """CMPT's image-text column of Tab. 6 (lr 1e-3, 10 epochs, batch 8), same schedule."""
    cfg = epic100_student()
    cfg.train = cmpt_train(lr=1e-3, epochs=10, batch_size=8)
    return cfg


def cmpt_train(lr: float, epochs: int, batch_size: int) -> TrainConfig:
    """Tab. 6's optimisation; lr_min is the (near-zero) end of the polynomial decay."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr_min=lr * 1e-4, lr_max=lr,
                       warmup_epochs=5, weight_decay=0.02, grad_clip=1.0, modality_dropout=0.5,
                       schedule="poly", poly_power=0.9, warmup_factor=0.1, adam_eps=1e-8)


PRESETS = {
    "epic100_teacher": epic100_teacher,
    "epic100_student": epic100_student,
    "ssv2_teacher": ssv2_teacher,
    "ssv2_student": ssv2_student,
    "demo_teacher": demo_teacher,
    "demo_student": demo_student,
    "cmpt_audio_video": cmpt_audio_video,
    "cmpt_image_text": cmpt_image_text,
}


def with_train_recipe(cfg: RunConfig, name: str, overrides: list[str] | None = None
                      ) -> RunConfig:
    """`cfg` with student.train taken from preset `name` (e.g. cmpt_audio_video), the `--set`
    overrides applied again on top."""
    if name not in PRESETS:
        raise MmkdError(f"--recipe {name}: no such preset (known: {', '.join(PRESETS)})")
    out = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student,
                                                               train=PRESETS[name]().train))
    out = apply_overrides(out, overrides or [])
    out.validate(extractors=False)
    return out


SIZES = ("small", "paper")
# extractors that learn from ~1k clips trained from scratch (the demo's Swins and AST do not)
SMALL_EXTRACTORS = {"video": "small_convnet", "flow": "small_convnet",
                    "audio": "small_convnet_audio", "detection": "small_stlt"}


def run_preset(dataset: str, size: str = "paper") -> RunConfig:
    """The default RunConfig for a dataset name (custom datasets start from EPIC's recipes).

    `size="small"` keeps the dataset's modalities and heads but takes the demo's sizes (8 frames,
    Θ = 16, its fusion sizes and short recipes) with the small-data extractors and a pretrain
    rate STLT survives (1e-3): what trains from scratch on ~1k clips on CPU."""
    if size not in SIZES:
        raise MmkdError(f"--size {size}: allowed: {', '.join(SIZES)}")
    if size == "small" and dataset != "demo":
        small, cfg = run_preset("demo"), run_preset(dataset)
        small.data, small.eval = cfg.data, cfg.eval
        for role in (small.teacher, small.student):
            role.extractors = dict(SMALL_EXTRACTORS)
        small.pretrain.train.lr_max = 1e-3
        return small
    from mmkd.registry import datasets

    # A name no dataset record holds starts from EPIC's recipes; validate() reports it.
    cfg = datasets.get(dataset).preset() if dataset in datasets else epic100_preset()
    cfg.data.dataset = dataset
    return cfg


def epic100_preset() -> RunConfig:
    """EPIC-KITCHENS-100's run (also a custom dataset's starting point)."""
    return RunConfig(data=DataConfig(dataset="epic100"), teacher=epic100_teacher(),
                     student=epic100_student())


def ssv2_preset() -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset="ssv2", modalities=["video", "flow", "detection"],
                        heads=["action"]),
        teacher=ssv2_teacher(), student=ssv2_student(),
    )


def demo_preset() -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset="demo"),
        clip=ClipConfig(num_frames=8, frame_stride=2, sampling="uniform"),
        extract=ExtractConfig(theta=16, batch_size=16, shard_size=64),
        teacher=demo_teacher(), student=demo_student(),
        pretrain=PretrainConfig(modalities=["video", "flow"], train=TrainConfig(
            epochs=12, batch_size=32, lr_min=1e-5, lr_max=3e-3, warmup_epochs=1,
            weight_decay=0.05, grad_clip=1.0)),
        eval=EvalConfig(robustness_drop="video"),  # its findings: robustness without video
    )


# ----------------------------------------------------------------------------- (de)serialise
def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


_BAD = object()  # a value that could not be coerced (its problem is already recorded)


def from_dict(cls: type, data: dict[str, Any], where: str = "",
              problems: list[str] | None = None) -> Any:
    """Build dataclass `cls` from a plain dict. Unknown keys and badly typed values are
    collected into `problems` (such a field keeps its default, so the rest can still be checked);
    called without a list, they raise one ConfigError together."""
    own = problems is None
    found: list[str] = [] if problems is None else problems
    if not isinstance(data, dict):
        found.append(f"{where or cls.__name__}: expected a mapping, got {data!r}")
        data = {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    found += [f"{where + '.' if where else ''}{k}: unknown field (allowed: "
              f"{', '.join(sorted(names))})" for k in sorted(set(data) - names, key=str)]
    kwargs = {}
    for key, value in data.items():
        if key in names:
            v = _coerce(hints[key], value, f"{where}.{key}" if where else key, found)
            if v is not _BAD:
                kwargs[key] = v
    if own and found:
        raise ConfigError(found)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    def bad(why: str) -> object:
        problems.append(f"{path}: {value!r} {why}")
        return _BAD

    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path, problems)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            return bad("is not a list")
        (item_tp, *_) = typing.get_args(tp)
        items = [_coerce(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in items) else items
    if origin is dict:
        if not isinstance(value, dict):
            return bad("is not a mapping")
        (_, value_tp) = typing.get_args(tp)
        items = {str(k): _coerce(value_tp, v, f"{path}.{k}", problems) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in items.values()) else items
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    if isinstance(value, (dict, list)) or (isinstance(value, bool) and tp is not bool):
        return bad(f"is not a valid {tp.__name__}")
    if tp is bool:
        text = str(value).lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            return bad("is not a valid bool (true or false)")
        return text in ("true", "1", "yes")
    if tp is int and isinstance(value, float):
        return int(value) if value.is_integer() else bad("is not a whole number (int)")
    try:
        return tp(value)
    except (TypeError, ValueError):
        return bad(f"is not a valid {tp.__name__}")


def _set(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """Apply `a.b=c` overrides (values parsed as YAML) to the plain dict of a RunConfig in place;
    returns the problems (bad syntax, unknown fields) instead of stopping at the first."""
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. student.train.lr_max=2e-4")
            continue
        node, tp = data, RunConfig
        *parents, leaf = key.split(".")
        for part in parents:
            if typing.get_origin(tp) is dict:  # a new key of a mapping (methods.kd.temperature=2)
                node, tp = node.setdefault(part, {}), typing.get_args(tp)[1]
                if not isinstance(node, dict):
                    problems.append(f"--set {key}: {part!r} is not a config section")
                    break
                continue
            hints = typing.get_type_hints(tp) if dataclasses.is_dataclass(tp) else {}
            if part not in hints or not isinstance(node.get(part), dict):
                problems.append(f"--set {key}: {part!r} is not a config section")
                break
            node, tp = node[part], hints[part]
        else:
            if leaf not in node and typing.get_origin(tp) is not dict:
                problems.append(f"--set {key}: unknown field {leaf!r} (allowed: "
                                f"{', '.join(sorted(node))})")
                continue
            node[leaf] = yaml.safe_load(raw) if raw else ""
    return problems


def _build(data: dict[str, Any], problems: list[str]) -> RunConfig:
    """A RunConfig from its plain dict. With any problem (syntax, unknown key, type) the error
    also lists the range problems of every other field, so one run shows them all."""
    cfg = from_dict(RunConfig, data, problems=problems)
    if problems:
        broken = [p.split(":")[0].split("[")[0] for p in problems]
        raise ConfigError(problems + [p for p in _problems(cfg) if not any(
            p.startswith((b + " ", b + ".")) for b in broken)])
    return cfg


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply `a.b=c` overrides (values parsed as YAML scalars/lists) on top of `cfg`.

    A dict-typed field (e.g. `teacher.extractors`) takes new keys: `teacher.extractors.detection=stlt_l12`.
    """
    data = to_dict(cfg)
    return _build(data, _set(data, overrides))


def load(path: str | Path, overrides: list[str] | None = None,
         dataset: str | None = None, size: str = "paper") -> RunConfig:
    """Read a YAML RunConfig on top of its dataset's preset (at `size`) and apply overrides. The
    preset is the file's `data.dataset`, else `dataset` (`mmkd init --dataset`), else demo."""
    path = Path(path)
    if not path.is_file():
        raise MmkdError(f"{path}: config file not found; check the path")
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise MmkdError(f"{path}: not valid YAML ({exc}); fix the file or re-run `mmkd init`") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MmkdError(f"{path}: the top level is a {type(data).__name__}, not a mapping; write "
                        "sections such as `data:`, `extract:`, `teacher:` (see `mmkd init`)")
    section = data.get("data")
    named = section.get("dataset") if isinstance(section, dict) else None
    if dataset and named and named != dataset:
        raise MmkdError(f"{path}: data.dataset is {named!r} but --dataset is {dataset!r}; "
                        "drop one of them")
    merged = _merge(to_dict(run_preset(str(named or dataset or "demo"), size)), data)
    return _build(merged, _set(merged, overrides or []))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) \
            and k not in ("extractors", "weights") else v
    return out


def save(cfg: RunConfig, path: str | Path) -> Path:
    """Write the resolved config (every field, defaults included) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


# ----------------------------------------------------------------------------- validation
def known_datasets() -> list[str]:
    """Dataset names from the one registry (its lookup imports the builders)."""
    from mmkd.registry import datasets

    return datasets.list()


def known_extractors() -> list[str]:
    """Extractor names from the one registry; asked late because the extractors import
    torch (a few seconds), which reading a config alone does not need."""
    from mmkd.registry import extractors

    return extractors.list()


def method_problems(cfg: RunConfig) -> list[str]:
    """What is wrong in `methods.<name>` (unknown method, field, type, a negative loss weight):
    each method's typed config lives with the method, which the registry imports on lookup."""
    from mmkd.registry import methods

    out = []
    for name in cfg.methods:
        if name not in methods.list():
            out.append(f"methods.{name}: no such method; allowed: {', '.join(methods.list())}")
            continue
        try:
            methods.get(name).config_from(cfg)
        except ConfigError as exc:
            out += exc.problems
    return out


def _problems(cfg: RunConfig, check_extractors: bool = True) -> list[str]:
    p: list[str] = []

    def check(ok: bool, field_: str, value: Any, why: str) -> None:
        if not ok:
            p.append(f"{field_} = {value!r}: {why}")

    datasets = known_datasets()
    extractors = known_extractors() if check_extractors else None
    check(cfg.data.dataset in datasets, "data.dataset", cfg.data.dataset,
          f"allowed: {', '.join(datasets)}")
    mods = cfg.data.modalities
    check(bool(mods), "data.modalities", mods, "at least one modality is needed")
    for m in mods:
        check(m in MODALITIES, "data.modalities", m, f"allowed: {', '.join(MODALITIES)}")
    check(len(set(mods)) == len(mods), "data.modalities", mods, "a modality is listed twice")
    check(bool(cfg.data.heads), "data.heads", cfg.data.heads, "at least one label head is needed")
    check(cfg.clip.num_frames > 0, "clip.num_frames", cfg.clip.num_frames, "must be > 0")
    check(cfg.clip.frame_stride > 0, "clip.frame_stride", cfg.clip.frame_stride, "must be > 0")
    check(cfg.clip.sampling in ("k400", "uniform"), "clip.sampling", cfg.clip.sampling,
          "allowed: k400, uniform")
    check(cfg.extract.theta >= 0, "extract.theta", cfg.extract.theta, "must be >= 0 (0 = no Θ-Average)")
    check(cfg.extract.batch_size > 0, "extract.batch_size", cfg.extract.batch_size, "must be > 0")
    check(cfg.extract.workers >= 0, "extract.workers", cfg.extract.workers, "must be >= 0")
    check(cfg.extract.device.split(":")[0] in ("cpu", "cuda"), "extract.device", cfg.extract.device,
          "allowed: cpu, cuda, cuda:N")
    check(1 <= cfg.extract.shard_size <= 4096, "extract.shard_size", cfg.extract.shard_size,
          "samples per shard; 64–256 is recommended")
    for role in (cfg.teacher, cfg.student):
        r = role.name
        for m in mods:
            check(m in role.extractors, f"{r}.extractors", sorted(role.extractors),
                  f"no extractor for modality {m!r}; set {r}.extractors.{m}=NAME")
        for m, name in role.extractors.items() if extractors is not None else ():
            check(name.split("+", 1)[0] in extractors, f"{r}.extractors.{m}", name,
                  f"allowed: {', '.join(extractors)}")  # a fine-tuned one's is NAME+ft-RUN
        f = role.fusion
        check(f.width > 0 and f.width % f.heads == 0, f"{r}.fusion.width", f.width,
              f"must be a positive multiple of fusion.heads ({f.heads})")
        check(f.layers >= 1, f"{r}.fusion.layers", f.layers, "must be >= 1")
        check(0 <= f.attn_dropout < 1, f"{r}.fusion.attn_dropout", f.attn_dropout, "must be in [0, 1)")
        check(f.missing_strategy in MISSING_STRATEGIES, f"{r}.fusion.missing_strategy",
              f.missing_strategy, f"allowed: {', '.join(MISSING_STRATEGIES)}")
    for r, t in (("teacher", cfg.teacher.train), ("student", cfg.student.train),
                 ("pretrain", cfg.pretrain.train)):
        check(t.epochs >= 1, f"{r}.train.epochs", t.epochs, "must be >= 1")
        check(t.batch_size >= 1, f"{r}.train.batch_size", t.batch_size, "must be >= 1")
        check(0 < t.lr_min <= t.lr_max, f"{r}.train.lr_min", t.lr_min, f"must be in (0, lr_max={t.lr_max}]")
        check(0 <= t.warmup_epochs <= t.epochs, f"{r}.train.warmup_epochs", t.warmup_epochs,
              f"must be in [0, epochs={t.epochs}]")
        check(t.weight_decay >= 0, f"{r}.train.weight_decay", t.weight_decay, "must be >= 0")
        check(t.grad_clip > 0, f"{r}.train.grad_clip", t.grad_clip, "must be > 0")
        check(0 <= t.modality_dropout < 1, f"{r}.train.modality_dropout", t.modality_dropout,
              "must be in [0, 1)")
        check(t.precision in ("auto", "fp32", "bf16"), f"{r}.train.precision", t.precision,
              "allowed: auto, fp32, bf16")
        check(t.schedule in SCHEDULES, f"{r}.train.schedule", t.schedule,
              f"allowed: {', '.join(SCHEDULES)}")
        check(t.poly_power > 0, f"{r}.train.poly_power", t.poly_power, "must be > 0")
        check(0 < t.warmup_factor <= 1, f"{r}.train.warmup_factor", t.warmup_factor,
              "must be in (0, 1]")
        check(t.adam_eps > 0, f"{r}.train.adam_eps", t.adam_eps, "must be > 0")
    for m in cfg.pretrain.modalities:
        check(m in MODALITIES, "pretrain.modalities", m, f"allowed: {', '.join(MODALITIES)}")
    for name in cfg.eval.protocols:
        check(name in (*PROTOCOLS, "all"), "eval.protocols", name,
              f"allowed: {', '.join(PROTOCOLS)}, all")
    check(cfg.augment.hflip in (True, False, None), "augment.hflip", cfg.augment.hflip,
          "allowed: true, false, null (on where flips keep labels true)")
    for rate in cfg.eval.missing_rates:
        check(0 <= rate < 1, "eval.missing_rates", rate, "each rate must be in [0, 1)")
    check(cfg.eval.robustness_drop in ("", *mods), "eval.robustness_drop",
          cfg.eval.robustness_drop, f"one of data.modalities ({', '.join(mods)}) or '' (the "
          "strongest single modality on val)")
    check(len(cfg.eval.seeds) >= 1, "eval.seeds", cfg.eval.seeds, "at least one seed")
    return p + (method_problems(cfg) if check_extractors else [])
