"""The dataset registry: one :class:`DatasetSpec` per dataset, looked up by lowercase name.

A spec holds everything the pipeline needs to know about a dataset without opening it: its task
family (``CEA`` categorical, ``DEA`` dimensional, ``MER`` micro-expression, ``pool`` unlabeled
pretraining clips), its label names in label-index order (or its regression targets), its fold
protocol, the metrics reported on it, where it comes from (public URL with checksums, a
user-placed licensed copy, or generated) and which parser reads its layout
(``avfmae/data/parsers/<module>.py``).

Paths: a public or generated dataset is materialised under ``{data.root}/raw/{name}``; a licensed
one is read in place from ``{data.licensed_root}/{source.dir_name}`` (``download`` only checks it
and writes a fingerprint to ``{data.root}/raw/{name}/source.json``), so licensed media are never
copied into the DVC cache or pushed to a remote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from avfmae.errors import UserError

__all__ = [
    "DatasetError",
    "RemoteFile",
    "Source",
    "Protocol",
    "DatasetSpec",
    "get",
    "names",
    "labeled_names",
    "pool_names",
    "describe",
    "describe_all",
]

Family = Literal["CEA", "DEA", "MER", "pool"]
ProtocolKind = Literal["official", "subject_blocks", "groups", "loso", "none"]
SourceKind = Literal["public", "licensed", "user", "generated"]


class DatasetError(UserError, RuntimeError):
    """A data problem the user can fix (missing copy, bad checksum, malformed annotations)."""


# ----------------------------------------------------------------------------------------------
# Spec dataclasses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a public source. ``md5``/``sha256`` pin its checksum; when both are empty the
    checksum published next to the file is used (Zenodo's record listing, a Git LFS pointer)."""

    name: str
    md5: str = ""
    sha256: str = ""
    size: int | None = None
    extract: bool = False


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and how to get it.

    ``kind``: ``public`` (fetched by ``download``), ``licensed`` (license-gated; the user places
    a copy under ``{data.licensed_root}/{dir_name}``), ``user`` (any folder the user names) or
    ``generated`` (the synthetic generator). ``expect`` are glob patterns, relative to the
    dataset root, that must each match at least one path in a usable copy. ``fetcher`` picks the
    download protocol of a public source (``zenodo`` or ``git_lfs``), ``base_urls`` its default
    hosts (``data.mirrors[name]`` or ``AVFMAE_MIRROR_<NAME>`` replaces them).
    """

    kind: SourceKind
    provider: str
    url: str
    obtain: str
    dir_name: str = ""
    expect: tuple[str, ...] = ()
    fetcher: str = ""
    record: str = ""
    files: tuple[RemoteFile, ...] = ()
    base_urls: tuple[tuple[str, str], ...] = ()
    share_with: tuple[str, ...] = ()

    def base_url(self, role: str) -> str:
        return dict(self.base_urls)[role]


@dataclass(frozen=True)
class Protocol:
    """How clips are split into folds.

    - ``official``: the parser reads the publisher's fold lists (each labeled clip gets the fold
      whose test list names it; ``0`` = training-only, e.g. MER2023's train set);
    - ``subject_blocks``: the official subject list (``subjects``) cut into ``n_folds``
      contiguous blocks of ``n // n_folds`` subjects, the last block taking the remainder
      (RAVDESS: 4 actors per fold; CREMA-D: 18,18,18,18,19). A subject keeps its fold however
      many others are missing from a copy. Without a pinned list the subjects the label file
      names (AVCAffe's participants, Werewolf-XL's players: the parser's
      ``ParseResult.subjects``), in natural sort order, are cut the same way, so a copy with
      part of the videos keeps the blocks; where the parser names none (the generated sets,
      whose subjects are all present by construction), the subjects present;
    - ``groups``: the parser gives each clip a group number (a recording session) = its fold;
    - ``loso``: leave one subject out, one fold per subject: fold ``k`` tests the ``k``-th
      subject of ``subjects`` or, without that list, the subject whose id carries the number
      ``k`` (SAMM ``006`` → fold 6, SMIC ``s3`` → fold 3): either way a subject keeps its fold
      in a partial copy, and numbers no subject carries are folds without a test part;
    - ``none``: no folds (pretraining pools).

    ``cross_validation``: the test parts together cover every labeled clip of the protocol.
    Validation is always carved from a fold's training part (subject-disjoint where subjects are
    known), never from its test part.
    """

    kind: ProtocolKind
    n_folds: int | None = None
    subject_independent: bool = False
    cross_validation: bool = True
    description: str = ""
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry (see the module docstring)."""

    name: str
    title: str
    family: Family
    protocol: Protocol
    source: Source
    parser: str
    labels: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    num_classes: int = 0
    metrics: tuple[str, ...] = ()
    has_audio: bool = True
    expected_clips: int | None = None
    notes: str = ""
    options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.labels and not self.num_classes:
            object.__setattr__(self, "num_classes", len(self.labels))

    @property
    def is_pool(self) -> bool:
        return self.family == "pool"

    @property
    def is_dimensional(self) -> bool:
        return self.family == "DEA"

    @property
    def levelled(self) -> bool:
        """A dimensional dataset whose levels are classified: ``labels`` = the level names
        shared by every dimension of ``targets``, one level per dimension and clip."""
        return self.family == "DEA" and bool(self.labels)

    @property
    def target_columns(self) -> tuple[str, ...]:
        """Manifest columns of the regression targets, e.g. ``("t_arousal", "t_valence")``."""
        return tuple(f"t_{t}" for t in self.targets)

    @property
    def level_columns(self) -> tuple[str, ...]:
        """Manifest columns of a levelled dataset's level indices, e.g. ``("l_arousal",
        "l_valence")`` (−1 = unlabeled); none for other datasets."""
        return tuple(f"l_{t}" for t in self.targets) if self.levelled else ()

    def option(self, key: str, default: object = None) -> object:
        return dict(self.options).get(key, default)


# ----------------------------------------------------------------------------------------------
# Entries
# ----------------------------------------------------------------------------------------------

CEA_METRICS = ("uar", "war", "weighted_f1")
DEA_METRICS = ("ccc", "pcc", "mse")
MER_METRICS = ("uf1", "uar")
LEVEL_METRICS = ("weighted_f1", "uar")

_REGISTRY: dict[str, DatasetSpec] = {}


def _add(spec: DatasetSpec) -> None:
    if spec.name in _REGISTRY:
        raise RuntimeError(f"duplicate registry entry {spec.name!r}")
    _REGISTRY[spec.name] = spec


def _licensed(provider: str, url: str, obtain: str, dir_name: str, *expect: str) -> Source:
    return Source("licensed", provider, url, obtain, dir_name=dir_name, expect=tuple(expect))


_MAFW_SRC = _licensed(
    "the MAFW team (Liu et al., ACM MM 2022)",
    "https://mafw-database.github.io/MAFW/",
    "sign the MAFW End User License Agreement and send it to the authors as the project page "
    "describes; they reply with the download link",
    "mafw",
    "data/clips/*.mp4",
    "Train & Test Set/*/no_caption/set_1/train.txt",
)
_MAFW_LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                "contempt", "anxiety", "helplessness", "disappointment")

_add(DatasetSpec(
    "mafw11", "MAFW (11-class)", "CEA",
    Protocol("official", 5, description="official 5-fold single-label split (set_1..set_5)"),
    _MAFW_SRC, "mafw:parse_single", labels=_MAFW_LABELS, metrics=CEA_METRICS,
    expected_clips=10045,
    notes="10,045 clips; 21 have no audio track (the preprocess stage rejects them)",
))
_add(DatasetSpec(
    "mafw43", "MAFW (43-class compound)", "CEA",
    Protocol("official", 5, description="official 5-fold compound split (set_1..set_5)"),
    _MAFW_SRC, "mafw:parse_compound", num_classes=43, metrics=CEA_METRICS,
    expected_clips=10045,
    notes="label names are read from the compound split files (sorted); index.json lists them",
))
_add(DatasetSpec(
    "dfew", "DFEW", "CEA",
    Protocol("official", 5, description="official 5-fold single-label split"),
    _licensed(
        "the DFEW team (Jiang et al., ACM MM 2020)",
        "https://dfew-dataset.github.io/",
        "sign the DFEW license agreement (academic use) and email it to the contact on the "
        "project page",
        "dfew",
        "Clip/original/*",
        "EmoLabel_DataSplit/test(single-labeled)/set_1.csv",
    ),
    "dfew:parse",
    labels=("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"),
    metrics=CEA_METRICS, expected_clips=16372,
))
_MER_LABELS = ("worried", "happy", "neutral", "angry", "surprise", "sad")
_add(DatasetSpec(
    "mer2023", "MER2023 (MER-MULTI)", "CEA",
    Protocol("official", 1, cross_validation=False,
             description="official split: train set for training, test1 (MER-MULTI) for test"),
    _licensed(
        "the MER2023 challenge organisers (Lian et al.)",
        "http://merchallenge.cn/",
        "sign the MER2023 End User License Agreement and send it to the organisers "
        "(merchallenge.contact@gmail.com); the test1 labels are part of the post-challenge "
        "release",
        "mer2023",
        "train/*",
        "train-label.csv",
        "test1-label.csv",
    ),
    "mer:parse_mer2023", labels=_MER_LABELS, metrics=("weighted_f1", "uar", "war"),
))
_add(DatasetSpec(
    "mer2024", "MER2024 labeled (train & val)", "CEA",
    Protocol("official", 5, description="5 folds: labels/set_k/{train,test}.txt when present, "
             "else a deterministic label-stratified 5-fold split"),
    _licensed(
        "the MER2024 challenge organisers (Lian et al.)",
        "https://zeroqiaoba.github.io/MER2024-website/",
        "sign the MER2024 End User License Agreement and send it to the organisers "
        "(merchallenge.contact@gmail.com)",
        "mer2024",
        "video-labeled/*",
        "label-disdim.csv",
    ),
    "mer:parse_mer2024", labels=_MER_LABELS, metrics=("war", "weighted_f1", "uar"),
    expected_clips=5030,
    notes="clips of video-unlabeled/ (when present) join the manifest as unlabeled pool clips",
))
_CREMAD_SRC = Source(
    "public",
    "CheyneyComputerScience (Cao et al., IEEE TAC 2014), Open Database License",
    "https://github.com/CheyneyComputerScience/CREMA-D",
    "downloaded automatically (Git LFS objects, checked against their SHA-256 pointers)",
    dir_name="cremad",
    expect=("VideoFlash/*.flv", "AudioWAV/*.wav"),
    fetcher="git_lfs",
    record="SentenceFilenames.csv",
    files=(RemoteFile("VideoFlash/{name}.flv"), RemoteFile("AudioWAV/{name}.wav")),
    base_urls=(
        ("raw", "https://raw.githubusercontent.com/CheyneyComputerScience/CREMA-D/master"),
        ("media",
         "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master"),
    ),
    share_with=("cremad6", "cremad4"),
)
_CREMAD_PROTO = Protocol(
    "subject_blocks", 5, subject_independent=True,
    description="5-fold actor-independent: actors 1001..1091 in order, 18 per fold, last 19",
    subjects=tuple(str(a) for a in range(1001, 1092)),
)
_add(DatasetSpec(
    "cremad6", "CREMA-D (6-class)", "CEA", _CREMAD_PROTO, _CREMAD_SRC, "cremad:parse",
    labels=("anger", "disgust", "fear", "happiness", "neutral", "sadness"),
    metrics=CEA_METRICS, expected_clips=7438,
    notes="7,442 clips minus 4 known broken ones (1076_MTI_NEU_XX, 1076_MTI_SAD_XX, "
          "1064_TIE_SAD_XX, 1064_IEO_DIS_MD)",
    options=(("codes", ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")),),
))
_add(DatasetSpec(
    "cremad4", "CREMA-D (4-class)", "CEA", _CREMAD_PROTO, _CREMAD_SRC, "cremad:parse",
    labels=("anger", "happiness", "neutral", "sadness"),
    metrics=CEA_METRICS,
    notes="ANG, HAP, NEU, SAD; clips of the other two classes are kept as unlabeled clips",
    options=(("codes", ("ANG", "HAP", "NEU", "SAD")),),
))
_add(DatasetSpec(
    "msp_improv", "MSP-IMPROV", "CEA",
    Protocol("groups", 6, subject_independent=True,
             description="6-fold leave-one-session-out (session k = speakers F0k, M0k)"),
    _licensed(
        "the MSP Lab, UT Dallas (Busso et al., IEEE TAC 2017)",
        "https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Improv.html",
        "sign the MSP-IMPROV academic license agreement and send it to the MSP Lab",
        "msp_improv",
        "Video/**/*.avi",
        "Evaluation.txt",
    ),
    "msp_improv:parse", labels=("anger", "happiness", "neutral", "sadness"),
    metrics=CEA_METRICS,
    notes="consensus labels A/H/N/S; O (other) and X (no agreement) are kept as unlabeled clips",
))
_add(DatasetSpec(
    "ravdess", "RAVDESS (speech, audio-visual)", "CEA",
    Protocol("subject_blocks", 6, subject_independent=True,
             description="6-fold speaker-independent: actors 01..24 in blocks of 4",
             subjects=tuple(f"Actor_{a:02d}" for a in range(1, 25))),
    Source(
        "public",
        "Livingstone & Russo (PLoS ONE 2018), CC BY-NC-SA 4.0, on Zenodo",
        "https://zenodo.org/records/1188976",
        "downloaded automatically (Zenodo record 1188976, checked against its MD5s)",
        dir_name="ravdess",
        expect=("Actor_*/*.mp4",),
        fetcher="zenodo",
        record="1188976",
        files=tuple(RemoteFile(f"Video_Speech_Actor_{a:02d}.zip", extract=True)
                    for a in range(1, 25)),
        base_urls=(("zenodo", "https://zenodo.org"),),
    ),
    "ravdess:parse",
    labels=("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    metrics=CEA_METRICS, expected_clips=1440,
    notes="speech, full audio-visual files only (modality 01, vocal channel 01): 60 per actor",
))
_add(DatasetSpec(
    "iemocap", "IEMOCAP (4-class)", "CEA",
    Protocol("groups", 5, subject_independent=True,
             description="5-fold leave-one-session-out"),
    _licensed(
        "SAIL, University of Southern California (Busso et al., LRE 2008)",
        "https://sail.usc.edu/iemocap/",
        "fill in the IEMOCAP release form on the SAIL website; place the content of "
        "IEMOCAP_full_release",
        "iemocap",
        "Session1/dialog/EmoEvaluation/*.txt",
        "Session1/dialog/avi/DivX/*.avi",
        "Session1/sentences/wav/*/*.wav",
    ),
    "iemocap:parse", labels=("anger", "happiness", "neutral", "sadness"),
    metrics=CEA_METRICS, expected_clips=5531,
    notes="ang, hap+exc, neu, sad; utterance videos are cut from the dialog AVIs at index time",
))
_add(DatasetSpec(
    "avcaffe", "AVCAffe", "DEA",
    Protocol("subject_blocks", 5, subject_independent=True,
             description="5-fold participant-independent (the participants of labels.csv, "
                         "in order)"),
    _licensed(
        "Sarkar et al. (AAAI 2023)",
        "https://github.com/pritamqu/AVCAffe",
        "request access through the form linked from the AVCAffe repository (academic use)",
        "avcaffe",
        "videos/**/*_task_*",
        "labels.csv",
    ),
    "avcaffe:parse", labels=("1", "2", "3", "4", "5"), targets=("arousal", "valence"),
    metrics=LEVEL_METRICS,
    notes="self-reported arousal and valence per task on 5 levels, each dimension classified "
          "5-way (one head, a softmax per dimension); weighted F1 and UAR per dimension, their "
          "mean selects the epoch. Clip predictions are scored per clip: the published pooling "
          "per participant-task is not applied",
))
_add(DatasetSpec(
    "werewolf_xl", "Werewolf-XL", "DEA",
    Protocol("subject_blocks", 5, subject_independent=True,
             description="5-fold player-independent (the players of annotations.csv in order)"),
    _licensed(
        "Zhang et al. (IEEE TAC 2021)",
        "https://lilyzhang.github.io/Werewolf-XL/",
        "request the Werewolf-XL database from its authors through the project page "
        "(academic license)",
        "werewolf_xl",
        "video/**/*.mp4",
        "annotations.csv",
    ),
    "werewolf:parse", targets=("arousal", "valence", "dominance"),
    metrics=DEA_METRICS,
))

_ME_PROTO = Protocol("loso", None, subject_independent=True,
                     description="leave-one-subject-out: fold k tests the subject numbered k")
_add(DatasetSpec(
    "samm", "SAMM", "MER", _ME_PROTO,
    _licensed(
        "Manchester Metropolitan University (Davison et al., IEEE TAC 2018)",
        "http://www2.docm.mmu.ac.uk/STAFF/M.Yap/dataset.php",
        "sign the SAMM license agreement and email it to the dataset contact at MMU",
        "samm",
        "*.xlsx",
        "*/*/*.jpg",
    ),
    "micro:parse_samm",
    labels=("anger", "contempt", "happiness", "surprise", "other"),
    metrics=MER_METRICS, has_audio=False,
    notes="5 classes; disgust/fear/sadness clips are kept as unlabeled clips. Frames from onset "
          "to offset are encoded one output frame per captured frame at 25 fps, with a silent "
          "audio track",
))
_add(DatasetSpec(
    "casme2", "CASME II", "MER",
    dataclasses.replace(_ME_PROTO, subjects=tuple(f"sub{s:02d}" for s in range(1, 27))),
    _licensed(
        "Institute of Psychology, Chinese Academy of Sciences (Yan et al., PLoS ONE 2014)",
        "http://casme.psych.ac.cn/casme/e2",
        "sign the CASME II license agreement and send it to the contact on the CASME page",
        "casme2",
        "*.xlsx",
        "**/sub*/*/*.jpg",
    ),
    "micro:parse_casme2",
    labels=("happiness", "disgust", "repression", "surprise", "others"),
    metrics=MER_METRICS, has_audio=False,
    notes="5 classes; fear/sadness clips are kept as unlabeled clips",
))
_add(DatasetSpec(
    "smic", "SMIC (HS)", "MER", _ME_PROTO,
    _licensed(
        "Center for Machine Vision and Signal Analysis, University of Oulu (Li et al., FG 2013)",
        "https://www.oulu.fi/en/university/faculties-and-units/faculty-information-technology-"
        "and-electrical-engineering/center-machine-vision-and-signal-analysis",
        "sign the SMIC license agreement and send it to the CMVS contact",
        "smic",
        "**/HS/*/micro/*/*",
    ),
    "micro:parse_smic",
    labels=("negative", "positive", "surprise"),
    metrics=MER_METRICS, has_audio=False,
))
_add(DatasetSpec(
    "casme3", "CAS(ME)^3 (part A)", "MER", _ME_PROTO,
    _licensed(
        "Institute of Psychology, Chinese Academy of Sciences (Li et al., IEEE TPAMI 2022)",
        "http://casme.psych.ac.cn/casme/e4",
        "sign the CAS(ME)^3 license agreement and send it to the contact on the CASME page",
        "casme3",
        "*.xlsx",
        "**/color/*.jpg",
    ),
    "micro:parse_casme3",
    labels=("anger", "disgust", "fear", "happy", "others", "sad", "surprise"),
    metrics=MER_METRICS, has_audio=False,
))
_add(DatasetSpec(
    "mmew", "MMEW (micro)", "MER", _ME_PROTO,
    _licensed(
        "Ben et al. (IEEE TPAMI 2021)",
        "http://www.dpailab.com/database.html",
        "sign the MMEW license agreement and send it to the dataset contact",
        "mmew",
        "*.xlsx",
        "Micro_Expression/*/*",
    ),
    "micro:parse_mmew",
    labels=("anger", "disgust", "fear", "happiness", "others", "sadness", "surprise"),
    metrics=MER_METRICS, has_audio=False,
))

_POOL = Protocol("none", description="pretraining pool: unlabeled, no folds")
_add(DatasetSpec(
    "voxceleb2", "VoxCeleb2-dev", "pool", _POOL,
    _licensed(
        "the Visual Geometry Group, University of Oxford (Chung et al., Interspeech 2018)",
        "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html",
        "request the audio-visual (mp4) dev set through the form on the VoxCeleb page and "
        "unpack it",
        "voxceleb2",
        "**/id*/*/*.mp4",
    ),
    "pools:parse_voxceleb2", expected_clips=1092009,
))
_add(DatasetSpec(
    "avspeech", "AVSpeech", "pool", _POOL,
    _licensed(
        "Google Research (Ephrat et al., SIGGRAPH 2018)",
        "https://looking-to-listen.github.io/avspeech/",
        "download avspeech_train.csv and fetch the listed YouTube segments yourself "
        "(the dataset ships as a list of segments, not as videos); put the clips under clips/",
        "avspeech",
        "clips/**/*.mp4",
    ),
    "pools:parse_avspeech",
))
_add(DatasetSpec(
    "folder", "folder of face videos", "pool", _POOL,
    Source(
        "user", "you", "",
        "put any face videos (mp4, avi, mkv, mov, webm, flv) under the folder, or point "
        "data.folder_path at a folder that holds them",
        dir_name="folder",
        expect=("**/*.mp4|**/*.avi|**/*.mkv|**/*.mov|**/*.webm|**/*.flv",),
    ),
    "pools:parse_folder",
))


def _synthetic_labels() -> tuple[str, ...]:
    try:
        from avfmae.data.synthetic.classes import CLASSES
    except Exception:  # the generator package is unavailable: fall back to its documented table
        return ("neutral", "calm", "happy", "sad", "angry", "surprised")
    return tuple(c.name for c in sorted(CLASSES, key=lambda c: c.code))


_add(DatasetSpec(
    "synthetic", "synthetic (embedded)", "CEA",
    Protocol("subject_blocks", 3, subject_independent=True,
             description="3-fold speaker-independent: labeled actors in 3 contiguous groups"),
    Source("generated", "avfmae.data.synthetic", "", "generated by `avfmae download synthetic`",
           dir_name="synthetic", expect=("synthetic.json", "labeled/Actor_*/*.mp4")),
    "synthetic:parse", labels=_synthetic_labels(), targets=("valence", "arousal"),
    metrics=CEA_METRICS + ("ccc",),
    notes="categorical labels plus class-level valence/arousal (t_valence, t_arousal); the "
          "unlabeled pool/ clips join the manifest with labeled=False",
))


def _synthetic_variant(name: str, title: str, family: Family, protocol: Protocol,
                       **fields: object) -> None:
    """A named variant of the generator (``avfmae/data/synthetic/variants.py``)."""
    _add(DatasetSpec(
        name, title, family, protocol,
        Source("generated", "avfmae.data.synthetic", "", f"generated by `avfmae download {name}`",
               dir_name=name, expect=("synthetic.json", "labeled/Actor_*/*.mp4")),
        "synthetic:parse", **fields))  # type: ignore[arg-type]


_SYNTHETIC_FOLDS = Protocol("subject_blocks", 3, subject_independent=True,
                            description="3-fold speaker-independent: actors in 3 contiguous "
                                        "groups")
_synthetic_variant(
    "synthetic4", "synthetic, 4 classes (embedded)", "CEA", _SYNTHETIC_FOLDS,
    labels=("neutral", "happy", "sad", "angry"), metrics=CEA_METRICS,
    notes="other speakers than `synthetic`, half as many, 4 of its 6 classes: a second label "
          "set for s1 to pool",
)
_synthetic_variant(
    "synthetic_va", "synthetic valence/arousal regression (embedded)", "DEA", _SYNTHETIC_FOLDS,
    targets=("valence", "arousal"), metrics=DEA_METRICS,
    notes="class-level valence and arousal in [-1, 1] as continuous targets (like Werewolf-XL)",
)
_synthetic_variant(
    "synthetic_valence5", "synthetic valence on 5 levels (embedded)", "DEA", _SYNTHETIC_FOLDS,
    labels=("1", "2", "3", "4", "5"), targets=("valence",), metrics=LEVEL_METRICS,
    notes="valence cut into 5 equal levels of [-1, 1] and classified (one dimension of AVCAffe)",
)
_synthetic_variant(
    "synthetic_av5", "synthetic arousal and valence on 5 levels (embedded)", "DEA",
    _SYNTHETIC_FOLDS,
    labels=("1", "2", "3", "4", "5"), targets=("arousal", "valence"), metrics=LEVEL_METRICS,
    notes="arousal and valence each cut into 5 equal levels of [-1, 1] and classified per "
          "dimension (like AVCAffe)",
)
_synthetic_variant(
    "synthetic_me", "synthetic micro-expressions (embedded)", "MER",
    Protocol("loso", None, subject_independent=True,
             description="leave-one-subject-out: fold k tests speaker Actor_k"),
    labels=("negative", "neutral", "positive"), metrics=MER_METRICS,
    options=(("label_from", "face"),
             ("face_labels", (("frown", "negative"), ("relaxed", "neutral"),
                              ("smile", "positive")))),
    notes="labels from the face pattern alone; the voice still plays (unlike real MER sets)",
)


# ----------------------------------------------------------------------------------------------
# Lookup
# ----------------------------------------------------------------------------------------------


def names() -> list[str]:
    """Every registry name, in registry order."""
    return list(_REGISTRY)


def labeled_names() -> list[str]:
    """Names of datasets with labels (CEA, DEA, MER)."""
    return [n for n, s in _REGISTRY.items() if not s.is_pool]


def pool_names() -> list[str]:
    """Names of the unlabeled pretraining pools."""
    return [n for n, s in _REGISTRY.items() if s.is_pool]


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a clear :class:`DatasetError` lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; registry names are: {', '.join(_REGISTRY)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# Human-readable listing (`avfmae datasets`)
# ----------------------------------------------------------------------------------------------


def describe(name: str) -> str:
    """A few lines about one dataset: task, labels/targets, protocol, metrics, source."""
    s = get(name)
    lines = [f"{s.name}: {s.title} [{s.family}]"]
    if s.levelled:
        lines.append(f"  dimensions, each classified: {', '.join(s.targets)}")
        lines.append(f"  levels ({s.num_classes}) of each dimension: {', '.join(s.labels)}")
    elif s.labels:
        lines.append(f"  labels ({s.num_classes}): {', '.join(s.labels)}")
    elif s.num_classes:
        lines.append(f"  labels: {s.num_classes} classes, names read from the data")
    if s.targets and not s.levelled:
        lines.append(f"  targets: {', '.join(s.targets)}")
    lines.append(f"  protocol: {s.protocol.description}")
    if s.metrics:
        lines.append(f"  metrics: {', '.join(s.metrics)}")
    src = s.source
    where = {"public": "public", "licensed": "licensed", "user": "your folder",
             "generated": "generated"}[src.kind]
    lines.append(f"  source: {where} — {src.provider}" + (f" <{src.url}>" if src.url else ""))
    if src.kind in ("licensed", "user"):
        lines.append(f"  obtain: {src.obtain}")
    if s.notes:
        lines.append(f"  notes: {s.notes}")
    return "\n".join(lines)


def describe_all() -> str:
    """``describe`` for every registry entry."""
    return "\n\n".join(describe(n) for n in _REGISTRY)
