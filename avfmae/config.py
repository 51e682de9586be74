"""``params.yaml`` → typed, validated configuration.

Every knob of the pipeline lives in one dataclass field declared with :func:`knob`, grouped by
stage. :func:`load_params` checks the whole file before any compute: an unknown key, a wrong type
or an out-of-range value raises :class:`ConfigError` naming the dotted key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from avfmae.errors import ConfigError

__all__ = [
    "ConfigError",
    "knob",
    "load_params",
    "parse_section",
    "Params",
    "DataConfig",
    "SyntheticConfig",
    "PreprocessConfig",
    "ModelConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "StageConfig",
    "EvalConfig",
]

DEFAULT_PARAMS = Path("params.yaml")


def knob(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    length: int | None = None,
    help: str = "",
) -> Any:
    """Declare a config field with its default, inclusive bounds and a one-line description.

    ``lo_open``/``hi_open`` make a bound exclusive (e.g. a learning rate must be > 0). A list
    field's bounds apply to each element, and ``length`` fixes how many it has.
    Allowed string values are declared with ``Literal[...]`` in the field's type.
    """
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "length": length,
            "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded synthetic dataset (see ``data/README.md`` for what each class looks like)."""

    seed: int = knob(0, lo=0, help="generator seed; same seed → byte-identical dataset")
    n_speakers: int = knob(24, lo=2, hi=98, help="labeled identities (split into folds)")
    n_pool_speakers: int = knob(
        8, lo=0, hi=97, help="extra identities of the unlabeled pool (actors in all ≤ 99)"
    )
    clips_per_class: int = knob(1, lo=1, hi=50, help="labeled clips per speaker and class")
    pool_clips_per_speaker: int = knob(6, lo=0, hi=198, help="unlabeled clips per pool speaker")
    duration_s: float = knob(3.0, lo=1.0, hi=20.0, help="clip length in seconds")
    fps: int = knob(25, lo=10, hi=60, help="video frame rate")
    frame_size: int = knob(224, lo=96, hi=1024, help="rendered frame side in pixels (even)")
    sample_rate: int = knob(16000, lo=8000, hi=48000, help="audio sample rate of the MP4 track")


@dataclass(frozen=True)
class DataConfig:
    """Which datasets are used and where they live."""

    datasets: list[str] = knob(["synthetic"], help="enabled labeled datasets (registry names)")
    pretrain_pool: list[str] = knob(["synthetic"], help="datasets whose clips feed pretraining")
    s1_pool: list[str] = knob(
        ["synthetic4"],
        help="labeled datasets whose training parts join s1 of each target of their family, "
             "without being fine-tuned or evaluated themselves")
    root: str = knob("data", help="root of raw/ interim/ processed/")
    licensed_root: str = knob(
        "data/licensed", help="where user-placed copies of license-gated datasets live"
    )
    folds: list[int] = knob(
        [1, 2, 3], help="1-based folds to run for every enabled dataset (must exist in each)"
    )
    val_fraction: float = knob(
        0.2, lo=0.0, hi=0.5, lo_open=True,
        help="share of training subjects held out for model selection",
    )
    folder_path: str = knob(
        "", help="directory of face videos for the `folder` pool; empty = <licensed_root>/folder"
    )
    mirrors: dict[str, str] = knob(
        {}, help="dataset → base URL replacing its public download host (mirror, local server)"
    )
    local_copies: dict[str, str] = knob(
        {}, help="dataset → folder already holding a copy in the publisher's layout: checked "
        "and read in place, never downloaded (must lie outside <root>/raw/<dataset>)"
    )
    synthetic: SyntheticConfig = knob(SyntheticConfig())


@dataclass(frozen=True)
class PreprocessConfig:
    """Face tracking/cropping and audio extraction into the clip store."""

    face_size: int = knob(160, lo=32, hi=512, help="side of the square face crop in pixels")
    margin: float = knob(0.25, lo=0.0, hi=1.0, help="crop margin around the box, share of side")
    detect_every: int = knob(5, lo=1, hi=50, help="run the detector every k frames")
    detector: Literal["mtcnn", "haar"] = knob(
        "mtcnn", help="face detector: mtcnn (CNN with landmarks) or haar (OpenCV cascade)"
    )
    align: bool = knob(True, help="align to a canonical face (haar: only level the eyes)")
    min_face_rate: float = knob(0.5, lo=0.0, hi=1.0, help="reject clips with fewer detections")
    min_audio_s: float = knob(0.5, lo=0.0, hi=10.0, help="reject clips with shorter audio")
    max_reject_fraction: float = knob(0.1, lo=0.0, hi=1.0, help="fail when more are rejected")
    sample_rate: int = knob(16000, lo=8000, hi=48000, help="WAV sample rate")
    fps: int = knob(25, lo=5, hi=60, help="frame rate of the face clips")
    crf: int = knob(18, lo=0, hi=51, help="x264 quality of the face clips")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = knob(
        "ultrafast", help="x264 speed preset of the face clips (ultrafast also decodes fastest)"
    )
    min_face: float = knob(
        0.15, lo=0.02, hi=1.0, help="smallest face searched for, share of the frame's short side"
    )
    workers: int = knob(0, lo=0, hi=256, help="worker processes; 0 = all cores")


@dataclass(frozen=True)
class ModelConfig:
    """Model scale from the registry plus per-field overrides."""

    scale: str = knob("tiny", help="registered scale: tiny, small, base, large, huge")
    overrides: dict[str, Any] = knob({}, help="scale fields to override, e.g. {depth: 4}")
    reference_compatible: bool = knob(
        False, help="reproduce the published model flaws (docs/model.md §10)")


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised audio-visual pretraining (docs/model.md §5)."""

    epochs: int = knob(20, lo=1, hi=10000)
    warmup_epochs: float = knob(1.0, lo=0.0, hi=1000.0)
    batch_size: int = knob(8, lo=1, hi=4096, help="per-process batch size")
    base_lr: float = knob(4e-2, lo=0.0, lo_open=True, help="scaled by total batch / 256")
    min_lr: float = knob(1e-6, lo=0.0)
    weight_decay: float = knob(0.05, lo=0.0, hi=1.0)
    betas: list[float] = knob([0.9, 0.95], lo=0.0, hi=1.0, hi_open=True, length=2,
                              help="AdamW (beta1, beta2)")
    clip_grad: float = knob(0.0, lo=0.0, help="max grad norm; 0 = off")
    mask_ratio_video: float = knob(0.9, lo=0.0, hi=1.0, lo_open=True)
    mask_ratio_audio: float = knob(0.8125, lo=0.0, hi=1.0, lo_open=True)
    decoder_mask_ratio_video: float = knob(0.5, lo=0.0, hi=1.0)
    decoder_mask_ratio_audio: float = knob(0.5, lo=0.0, hi=1.0)
    window_masking: bool = knob(True, help="equal visible count per LG region (docs/model.md F3)")
    contrastive_weight: float = knob(0.0025, lo=0.0)
    contrastive_temperature: float = knob(0.07, lo=0.0, lo_open=True)
    gather_negatives: bool = knob(True, help="all-gather contrastive negatives across ranks")
    view_contrastive_weight: float = knob(
        0.5, lo=0.0, help="second masked view of each clip's video, contrasted with the first "
                          "(docs/model.md §5.6); 0 = off, the published recipe")
    view_contrastive_temperature: float = knob(0.1, lo=0.0, lo_open=True)
    amp: Literal["auto", "off", "bf16", "fp16"] = knob("auto")
    compile: bool = knob(False)
    checkpoint_every_steps: int = knob(50, lo=1)
    num_workers: int = knob(2, lo=0, hi=64)
    seed: int = knob(0, lo=0)
    modality: Literal["av", "video", "audio"] = knob(
        "av", help="av: both streams, fusion and audio-visual contrastive term; video | audio: "
                   "that modality's masked autoencoder alone (the unimodal ablation)"
    )


@dataclass(frozen=True)
class StageConfig:
    """One progressive-semantics-injection fine-tuning stage (s1, s2 or s3)."""

    epochs: int = knob(10, lo=1, hi=10000)
    warmup_epochs: float = knob(1.0, lo=0.0, hi=1000.0)
    batch_size: int = knob(8, lo=1, hi=4096)
    base_lr: float = knob(1e-3, lo=0.0, lo_open=True, help="scaled by total batch / 256")
    min_lr: float = knob(1e-6, lo=0.0)
    weight_decay: float = knob(0.05, lo=0.0, hi=1.0)
    layer_decay: float = knob(0.75, lo=0.0, hi=1.0, lo_open=True)
    drop_path: float = knob(0.1, lo=0.0, hi=1.0)
    mixup: float = knob(0.0, lo=0.0, help="mixup alpha; 0 = off (published recipe: 0.8)")
    cutmix: float = knob(0.0, lo=0.0, help="cutmix alpha; 0 = off (published recipe: 1.0)")
    label_smoothing: float = knob(0.1, lo=0.0, hi=1.0)
    rand_augment: str = knob("", help="RandAugment spec (timm style), '' = off "
                                      "(published recipe: rand-m7-n4-mstd0.5-inc1)")
    min_crop_area: float = knob(1.0, lo=0.0, hi=1.0, lo_open=True,
                                help="smallest area share of the random resized crop, 1 = no "
                                     "crop (published recipe: 0.08)")
    reprob: float = knob(0.0, lo=0.0, hi=1.0,
                         help="random erasing probability per frame (published recipe: 0.25)")
    freeze_encoders: bool = knob(False, help="train only fusion and head")
    fresh_head: bool = knob(
        False, help="start with new heads instead of the previous stage's head for each "
                    "dataset (the first stage always starts with new heads)",
    )
    modality_dropout: float = knob(
        0.0, lo=0.0, hi=1.0,
        help="share of an audio-visual model's training clips that lose one modality (audio or "
             "video, even odds; its input set to the normalised mean), so neither stream can "
             "carry the loss alone; 0 = off (the published recipe)",
    )
    unimodal_loss: float = knob(
        1.0, lo=0.0,
        help="weight of an audio-visual model's extra loss terms, one per encoder, on the "
             "logits of a training-only head that reads that encoder alone (as a one-modality "
             "model's head does), so the face encoder is trained to predict even once the "
             "voice fits the labels; 0 = off (the published recipe); no effect on a "
             "one-modality model, whose head reads one encoder already",
    )


#: file endings ``finetune.init`` accepts as a checkpoint path
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class FinetuneConfig:
    """Three-stage progressive fine-tuning per dataset and fold."""

    stages: list[Literal["s1", "s2", "s3"]] = knob(["s1", "s2", "s3"])
    init: str = knob(
        "pretrained", help="where s1 (the first stage) starts: pretrained (this pipeline's "
        "pretraining), random, or the path of a checkpoint file (a published AVF-MAE++ .pth or "
        "one `avfmae convert` wrote); with random or a path, pretraining is not run"
    )
    modality: Literal["av", "video", "audio"] = knob("av")
    mix_audio: bool = knob(True, help="mixup/cutmix both modalities (docs/model.md F12)")
    regression_loss: Literal["mse", "ccc"] = knob("ccc")
    head_init_scale: float = knob(
        1.0, lo=0.0, lo_open=True,
        help="multiplies fresh heads' trunc-normal(0.02) weights (published: 0.001, which "
             "their AV head ignored)",
    )
    head_standardize: bool = knob(
        True, help="standardise each head-input feature over the batch (BatchNorm without "
                   "affine; running statistics at evaluation) before the heads; the published "
                   "heads read the LayerNorm'd features directly (false)",
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = knob("auto")
    num_workers: int = knob(2, lo=0, hi=64)
    seed: int = knob(0, lo=0)
    s1: StageConfig = knob(StageConfig(epochs=12, base_lr=3e-2, layer_decay=1.0))
    s2: StageConfig = knob(StageConfig(epochs=3, base_lr=3e-2, freeze_encoders=True))
    s3: StageConfig = knob(StageConfig(epochs=6, base_lr=1e-2))


@dataclass(frozen=True)
class EvalConfig:
    """Deterministic test-time protocol."""

    num_windows: int = knob(2, lo=1, hi=32, help="temporal windows averaged per clip")
    batch_size: int = knob(8, lo=1, hi=4096)


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    data: DataConfig = knob(DataConfig())
    preprocess: PreprocessConfig = knob(PreprocessConfig())
    model: ModelConfig = knob(ModelConfig())
    pretrain: PretrainConfig = knob(PretrainConfig())
    finetune: FinetuneConfig = knob(FinetuneConfig())
    eval: EvalConfig = knob(EvalConfig())


# ----------------------------------------------------------------------------------------------
# Parsing and validation
# ----------------------------------------------------------------------------------------------


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``; raises :class:`ConfigError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return params_from_dict(raw)


def parse_section(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``raw`` (a mapping), validating every field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {_kind(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{_join(where, unknown[0])}: unknown key; allowed keys are {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, raw_value in raw.items():
        key = _join(where, name)
        values[name] = _check_range(fields[name], _coerce(hints[name], raw_value, key), key)
    return _with_nested_defaults(cls, values)


def _with_nested_defaults(cls: type, values: dict[str, Any]) -> Any:
    """Keep a nested section's own defaults (e.g. ``s2``) for keys the file does not set."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        if isinstance(value, _Partial):
            values[f.name] = dataclasses.replace(getattr(defaults, f.name), **value.values)
    return cls(**values)


@dataclass
class _Partial:
    values: dict[str, Any]


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        parsed = parse_section(tp, value, key)
        return _Partial({k: getattr(parsed, k) for k in value})
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_kind(value)}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _yaml11_float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_kind(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _yaml11_float(text: str) -> float | str:
    """YAML 1.1 reads ``1e-6`` (no dot) as a string; take it as the number it means."""
    try:
        return float(text) if any(c.isdigit() for c in text) else text
    except ValueError:
        return text


def _check_range(f: dataclasses.Field, value: Any, key: str) -> Any:
    meta = f.metadata
    if isinstance(value, list):
        length = meta.get("length")
        if length is not None and len(value) != length:
            raise ConfigError(f"{key}: expected a list of {length} values, got {len(value)}")
        for i, item in enumerate(value):
            _check_range(f, item, f"{key}[{i}]")
        return value
    lo, hi = meta.get("lo"), meta.get("hi")
    lo_open, hi_open = meta.get("lo_open"), meta.get("hi_open")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    below = value <= lo if (lo is not None and lo_open) else (lo is not None and value < lo)
    above = value >= hi if (hi is not None and hi_open) else (hi is not None and value > hi)
    if below or above:
        raise ConfigError(f"{key}: {value!r} is out of range; allowed {_interval(meta)}")
    return value


def _interval(meta: Any) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    return (f"{'(' if meta.get('lo_open') else '['}{'-inf' if lo is None else f'{lo:g}'}, "
            f"{'inf' if hi is None else f'{hi:g}'}{')' if meta.get('hi_open') else ']'}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# ----------------------------------------------------------------------------------------------
# JSON schema (Snakemake validates its config against it; generated from the dataclasses)
# ----------------------------------------------------------------------------------------------


def json_schema(cls: type | None = None) -> dict[str, Any]:
    """JSON schema of ``params.yaml`` derived from the config dataclasses."""
    cls = cls or Params
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        if f.metadata.get("help"):
            prop["description"] = f.metadata["help"]
        bounded = prop["items"] if prop.get("type") == "array" else prop
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is not None:
            bounded["exclusiveMinimum" if f.metadata.get("lo_open") else "minimum"] = lo
        if hi is not None:
            bounded["exclusiveMaximum" if f.metadata.get("hi_open") else "maximum"] = hi
        if f.metadata.get("length") is not None:
            prop["minItems"] = prop["maxItems"] = f.metadata["length"]
        props[f.name] = prop
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    if cls is Params:
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return schema


def _type_schema(tp: Any) -> dict[str, Any]:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return json_schema(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict:
        return {"type": "object"}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return {"type": simple[tp]} if tp in simple else {}


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the params mapping ``raw`` with dotted keys (``"finetune.s1.epochs"``) set,
    creating sections as needed (what ``dvc exp run -S`` does to ``params.yaml``)."""
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def params_from_dict(raw: dict[str, Any]) -> Params:
    """Validate an already-loaded params mapping (e.g. Snakemake's ``config``)."""
    params = parse_section(Params, raw, "")
    _check_across_keys(params)
    return params


def _check_across_keys(params: Params) -> None:
    """Rules that involve more than one key or the dataset registry."""
    from avfmae.data import registry
    from avfmae.data.augment_spec import parse_rand_augment
    from avfmae.mask_ratios import validate_ratios

    validate_ratios(params.pretrain)
    _check_model(params.model)
    known = registry.names()
    for key in ("datasets", "pretrain_pool", "s1_pool"):
        for i, name in enumerate(getattr(params.data, key)):
            if name not in known:
                raise ConfigError(f"data.{key}[{i}]: unknown dataset {name!r}; registry names "
                                  f"are {', '.join(known)}")
    for name in params.data.mirrors:
        if name not in known:
            raise ConfigError(f"data.mirrors.{name}: unknown dataset; registry names are "
                              f"{', '.join(known)}")
    if not params.data.datasets:
        raise ConfigError("data.datasets: list at least one labeled dataset, e.g. [synthetic]")
    for key, values in (("data.datasets", params.data.datasets),
                        ("data.pretrain_pool", params.data.pretrain_pool),
                        ("data.folds", params.data.folds)):
        twice = [v for i, v in enumerate(values) if v in values[:i]]
        if twice:
            raise ConfigError(f"{key}: {twice[0]!r} is listed twice")
    for key, i, name in [*(("datasets", i, n) for i, n in enumerate(params.data.datasets)),
                         *(("s1_pool", i, n) for i, n in enumerate(params.data.s1_pool))]:
        spec = registry.get(name)
        if spec.is_pool:
            raise ConfigError(f"data.{key}[{i}]: {name!r} is an unlabeled pretraining pool; "
                              "list it under data.pretrain_pool")
        n = spec.protocol.n_folds
        bad = [k for k in params.data.folds if k < 1 or (n is not None and k > n)]
        if bad:
            raise ConfigError(f"data.folds: fold {bad[0]} does not exist for {name} "
                              f"(folds 1..{n})")
    if not params.data.folds:
        raise ConfigError("data.folds: list at least one fold, e.g. [1]")
    init = params.finetune.init
    if init not in ("pretrained", "random") and not init.endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(f"finetune.init: {init!r} is neither 'pretrained', 'random' nor a "
                          f"checkpoint path ({', '.join(CHECKPOINT_SUFFIXES)})")
    for name in params.data.local_copies:
        if name not in known or registry.get(name).source.kind == "generated":
            raise ConfigError(f"data.local_copies: {name!r} is not a downloadable or placed "
                              f"dataset; registry names are {', '.join(known)}")
    if not params.finetune.stages or len(set(params.finetune.stages)) != len(
            params.finetune.stages) or list(params.finetune.stages) != sorted(
            params.finetune.stages):
        raise ConfigError(f"finetune.stages: {params.finetune.stages} must be a non-empty, "
                          "ordered subset of [s1, s2, s3]")
    if params.preprocess.face_size % 2:
        raise ConfigError(f"preprocess.face_size: {params.preprocess.face_size} must be even "
                          "(face clips are stored as 4:2:0 video)")
    pre, fine = params.pretrain.modality, params.finetune.modality
    if params.finetune.init == "pretrained" and pre != "av" and fine not in ("av", pre):
        raise ConfigError(f"finetune.modality: {fine} cannot start from a pretrain.modality "
                          f"{pre} encoder (it has no {fine} encoder); use finetune.init: random")
    for name in ("s1", "s2", "s3"):
        if getattr(params.finetune, name).modality_dropout > 0 and fine != "av":
            raise ConfigError(f"finetune.{name}.modality_dropout: a {fine}-only model has no "
                              "other modality to drop; set it to 0 or finetune.modality: av")
        spec = getattr(params.finetune, name).rand_augment
        if not spec:
            continue
        try:
            parse_rand_augment(spec)
        except ValueError as err:
            raise ConfigError(f"finetune.{name}.rand_augment: {err}") from None


def _check_model(model: ModelConfig) -> None:
    """The scale is registered, each override names a scale field with a value of its type, and
    the resolved scale is consistent (e.g. head counts divide the width)."""
    from avfmae.scales import ModelScale, field_names, get_scale, scale_names

    if model.scale not in scale_names():
        raise ConfigError(f"model.scale: {model.scale!r} is not registered; choose one of "
                          f"{scale_names()}")
    hints = {**typing.get_type_hints(ModelScale), "depth": int}
    for name, value in model.overrides.items():
        key = f"model.overrides.{name}"
        if name not in hints or name == "name":
            raise ConfigError(f"{key}: unknown scale field; allowed are "
                              f"{', '.join(n for n in field_names() if n != 'name')}")
        _check_override_type(hints[name], value, key)
    if not model.overrides:
        return  # registered scales are known to build
    try:
        get_scale(model.scale, **model.overrides)
        _build_on_meta_device(model)
    except (ValueError, TypeError, AssertionError) as err:
        raise ConfigError(f"model.overrides: {err}") from None


def _build_on_meta_device(model: ModelConfig) -> None:
    """Construct both models without allocating weights: the geometry checks (patch and region
    tiling) live in the layers, and this finds their errors before any stage starts."""
    import torch

    from avfmae.models import create_model

    with torch.device("meta"):
        create_model(model.scale, pretrain=True, **model.overrides)
        create_model(model.scale, num_classes={"check": 2}, **model.overrides)


def _check_override_type(tp: Any, value: Any, key: str) -> None:
    if get_origin(tp) is tuple:
        args = get_args(tp)
        length = None if args[-1] is Ellipsis else len(args)
        if not isinstance(value, list) or not value or length not in (None, len(value)):
            raise ConfigError(f"{key}: expected a list of {length or 'one or more'} integers, "
                              f"got {_kind(value)}")
        for i, item in enumerate(value):
            _coerce(int, item, f"{key}[{i}]")
        return
    _coerce(tp, value, key)
    if tp in (int, float) and not isinstance(value, bool) and value <= 0 \
            and not key.endswith("drop_path_rate"):
        raise ConfigError(f"{key}: {value!r} is out of range; allowed (0, inf)")
    if key.endswith("drop_path_rate") and not 0 <= value < 1:
        raise ConfigError(f"{key}: {value!r} is out of range; allowed [0, 1)")


def explain(params: Params) -> str:
    """Every key with its current value, allowed range and meaning, one line each."""
    lines: list[str] = []
    _explain_section(params, "", lines)
    return "\n".join(lines)


def _explain_section(section: Any, where: str, lines: list[str]) -> None:
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key, value = _join(where, f.name), getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            _explain_section(value, key, lines)
            continue
        allowed = _allowed(hints[f.name], f.metadata)
        help_ = f.metadata.get("help", "")
        lines.append(f"{key} = {value!r}" + (f"  allowed {allowed}" if allowed else "")
                     + (f"  {help_}" if help_ else ""))


def _allowed(tp: Any, meta: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(map(str, get_args(tp)))
    if meta.get("lo") is None and meta.get("hi") is None:
        return ""
    return _interval(meta)
