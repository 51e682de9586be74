"""The index stage on every registry entry's fixture: labels, subjects, folds, splits."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avfmae.config import DataConfig, Params
from avfmae.data import download as dl
from avfmae.data import registry
from avfmae.data.synthetic.variants import VARIANTS
from avfmae.data.download import download
from avfmae.data.index import assign_folds, index, read_manifest, read_splits
from avfmae.data.parsers import Clip
from avfmae.data.registry import DatasetError
from avfmae.tasks import task_of
from fixtures.datasets import builders as fx


def params(**data) -> Params:
    base = {"root": "data", "licensed_root": "data/licensed"}
    return dataclasses.replace(Params(), data=dataclasses.replace(DataConfig(), **{**base, **data}))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One working directory for the module: each dataset is downloaded and indexed once."""
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp_path_factory.mktemp("shared"))
    mp.setattr(dl, "BACKOFF_S", 0.01)
    cache: dict[str, Indexed] = {}

    def get(ds: str) -> Indexed:
        if ds not in cache:
            cache[ds] = prepare(ds, mp)
        return cache[ds]

    yield get
    mp.undo()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dl, "BACKOFF_S", 0.01)
    return tmp_path


@dataclasses.dataclass
class Indexed:
    facts: dict
    manifest: pd.DataFrame
    splits: pd.DataFrame
    summary: dict

    def row(self, clip_id: str) -> pd.Series:
        rows = self.manifest.loc[self.manifest["clip_id"] == clip_id]
        assert len(rows) == 1, f"{clip_id} not in the manifest"
        return rows.iloc[0]

    def parts(self, clip_id: str) -> dict[int, str]:
        s = self.splits.loc[self.splits["clip_id"] == clip_id]
        return dict(zip(s["fold"], s["part"]))

    def test_fold(self, clip_id: str) -> int:
        folds = [k for k, p in self.parts(clip_id).items() if p == "test"]
        assert len(folds) == 1
        return folds[0]

    def subjects(self, fold: int, part: str) -> set[str]:
        ids = self.splits.loc[(self.splits["fold"] == fold) & (self.splits["part"] == part),
                              "clip_id"]
        return set(self.manifest.loc[self.manifest["clip_id"].isin(ids), "subject"])

    def label(self, clip_id: str) -> str:
        return self.summary["labels"][int(self.row(clip_id)["label"])]


#: folds of fixtures whose subjects are not numbered from 1 (leave-one-subject-out numbers its
#: folds by the subject ids: SAMM's start at 006)
FOLDS = {"samm": [6, 7, 8]}


def prepare(ds: str, monkeypatch, p: Params | None = None) -> Indexed:
    """Build the fixture of ``ds`` the way a user would get it, download, index, read back."""
    p = p or params(**({"folds": FOLDS[ds]} if ds in FOLDS else {}))
    facts: dict = {}
    if ds == "ravdess":
        files, _ = fx.ravdess_remote()
        with fx.FixtureServer(files) as srv:
            download(ds, dataclasses.replace(p, data=dataclasses.replace(
                p.data, mirrors={ds: srv.url})))
    elif ds in ("cremad6", "cremad4"):
        with fx.FixtureServer(fx.cremad_remote()) as srv:
            download(ds, dataclasses.replace(p, data=dataclasses.replace(
                p.data, mirrors={ds: srv.url})))
    elif ds in VARIANTS:
        import avfmae.data.synthetic.variants as variants

        def fake_generate(cfg, out_dir, workers=0, codes=None):
            facts.update(fx.build_synthetic(Path(out_dir), n_pool=2 if VARIANTS[ds].pool else 0,
                                            codes=codes))
            return Path(out_dir)

        monkeypatch.setattr(variants, "generate", fake_generate)
        download(ds, p)
    else:
        folder, build = fx.LICENSED_BUILDERS[ds]
        root = Path(p.data.folder_path) if ds == "folder" and p.data.folder_path else \
            Path(p.data.licensed_root) / folder
        facts = build(root)
        download(ds, p)
    manifest_path, splits_path = index(ds, p)
    assert manifest_path == Path(p.data.root) / "interim" / ds / "manifest.csv"
    assert splits_path == Path(p.data.root) / "interim" / ds / "splits.csv"
    summary = json.loads((manifest_path.parent / "index.json").read_text())
    return Indexed(facts, read_manifest(manifest_path), read_splits(splits_path), summary)


# ----------------------------------------------------------------------------------------------
# Every entry
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ds", registry.names())
def test_every_registry_entry_downloads_and_indexes_its_fixture(shared, ds):
    spec = registry.get(ds)
    ix = shared(ds)
    m, s = ix.manifest, ix.splits
    assert list(m.columns[:7]) == ["clip_id", "dataset", "video", "audio", "subject", "labeled",
                                   "label"]
    assert list(m.columns[7:]) == [f"t_{t}" for t in spec.targets] + [
        f"l_{t}" for t in spec.targets if spec.levelled]
    assert m["clip_id"].is_unique and (m["dataset"] == ds).all()
    for col in ("video", "audio"):
        paths = [v for v in m[col] if v]
        assert all(Path(v).is_file() for v in paths)
        assert all(not Path(v).is_absolute() for v in paths)  # under the working directory
    if spec.is_pool:
        assert not m["labeled"].any() and s.empty and ix.summary["protocol"]["n_folds"] == 0
        return
    labeled = set(m.loc[m["labeled"], "clip_id"])
    assert labeled and set(s["clip_id"]) <= labeled
    n_folds = ix.summary["protocol"]["n_folds"]
    runnable = [k for k in range(1, n_folds + 1) if str(k) not in ix.summary["unrunnable_folds"]]
    assert sorted(s["fold"].unique()) == runnable
    if spec.protocol.n_folds:
        assert n_folds == spec.protocol.n_folds
    test = s.loc[s["part"] == "test", "clip_id"]
    assert test.is_unique
    if spec.protocol.cross_validation:
        assert set(test) == labeled
    assert not s.duplicated(["clip_id", "fold"]).any()
    for k in runnable:
        fk = s.loc[s["fold"] == k]
        assert set(fk["part"]) == {"train", "val", "test"}
        if spec.protocol.subject_independent:
            tr, va, te = (ix.subjects(k, p) for p in ("train", "val", "test"))
            assert not (tr & va) and not (tr & te) and not (va & te)
    if spec.is_dimensional:
        assert (m["label"] == -1).all()
        assert np.isfinite(m.loc[m["labeled"], list(spec.target_columns)].to_numpy()).all()
        assert m.loc[~m["labeled"], list(spec.target_columns)].isna().all().all()
        if spec.levelled:  # one level per dimension: l_<dim> in [0, L) exactly when labeled
            levels = m[list(spec.level_columns)]
            assert len(spec.level_columns) == len(spec.targets)
            assert (levels[m["labeled"]] >= 0).all().all()
            assert (levels[m["labeled"]] < spec.num_classes).all().all()
            assert (levels[~m["labeled"]] == -1).all().all()
    else:
        assert (m.loc[m["labeled"], "label"] >= 0).all()
        assert (m.loc[~m["labeled"], "label"] == -1).all()
        assert m["label"].max() < len(ix.summary["labels"])


# ----------------------------------------------------------------------------------------------
# Specific files
# ----------------------------------------------------------------------------------------------


def test_ravdess_names_labels_and_actor_folds(shared):
    ix = shared("ravdess")
    r = ix.row("01-01-06-01-02-01-12")
    assert ix.label("01-01-06-01-02-01-12") == "fearful" and r["label"] == 5
    assert r["subject"] == "Actor_12" and r["audio"] == ""
    assert r["video"] == "data/raw/ravdess/Actor_12/01-01-06-01-02-01-12.mp4"
    assert ix.test_fold("01-01-06-01-02-01-12") == 3
    assert ix.subjects(3, "test") == {"Actor_09", "Actor_10", "Actor_11", "Actor_12"}
    for k in range(1, 7):
        assert ix.subjects(k, "test") == {f"Actor_{a:02d}" for a in range(4 * k - 3, 4 * k + 1)}
        assert len(ix.subjects(k, "val")) == 4  # round(0.2 * 20 training actors)
    assert not ix.manifest["clip_id"].str.startswith("02-").any()  # video-only files skipped
    assert ix.summary["labels"][7] == "surprised"


def test_cremad_actor_folds_and_broken_clips(shared):
    ix = shared("cremad6")
    sizes = [len(ix.subjects(k, "test")) for k in range(1, 6)]
    assert sizes == [18, 18, 18, 18, 19]
    assert ix.subjects(1, "test") == {str(a) for a in range(1001, 1019)}
    assert ix.subjects(5, "test") == {str(a) for a in range(1073, 1092)}
    assert "1076_MTI_SAD_XX" not in set(ix.manifest["clip_id"])
    assert {"clip": "1076_MTI_SAD_XX", "reason": "known broken clip"} in ix.summary["excluded"]
    r = ix.row("1001_IEO_ANG_XX")
    assert ix.label("1001_IEO_ANG_XX") == "anger" and r["subject"] == "1001"
    assert r["audio"] == "data/raw/cremad6/AudioWAV/1001_IEO_ANG_XX.wav"
    assert r["video"].endswith("VideoFlash/1001_IEO_ANG_XX.flv")


def test_cremad4_keeps_other_emotions_unlabeled(shared):
    ix = shared("cremad4")
    assert ix.summary["labels"] == ["anger", "happiness", "neutral", "sadness"]
    dis = ix.row("1002_IWL_DIS_HI")
    assert not dis["labeled"] and dis["label"] == -1 and not ix.parts("1002_IWL_DIS_HI")
    assert ix.label("1006_TSI_SAD_HI") == "sadness"


def test_mafw_official_folds(shared):
    ix = shared("mafw11")
    assert ix.label("00003") == "fear" and ix.test_fold("00003") == 3
    assert ix.label("00005") == "neutral" and ix.test_fold("00005") == 5
    assert ix.row("00003")["subject"] == "" and ix.row("00003")["audio"] == ""
    assert not ix.row("00011")["labeled"]
    # clip-level validation carved from the official training list, never from the test list
    for k in range(1, 6):
        parts = ix.splits.loc[ix.splits["fold"] == k]
        assert len(parts.loc[parts["part"] == "val"]) >= 1
        assert set(parts.loc[parts["part"] != "test", "clip_id"]) == \
            {f"{i:05d}" for i, f in ix.facts["fold"].items() if f != k}


def test_mafw43_reads_compound_labels(shared):
    ix = shared("mafw43")
    assert ix.summary["labels"] == ["anger_sadness", "fear_surprise", "happiness_surprise"]
    assert ix.label("00003") == "anger_sadness"
    # training and evaluation take the names the index read (the registry has none for mafw43)
    assert task_of(params(), "mafw43").names == tuple(ix.summary["labels"])


def test_dfew_labels_are_one_based(shared):
    ix = shared("dfew")
    assert ix.label("00007") == "fear" and ix.test_fold("00007") == 2
    assert ix.label("00001") == "happy"
    assert not ix.row("00012")["labeled"]


def test_mer2023_train_and_test1(shared):
    ix = shared("mer2023")
    assert ix.summary["protocol"]["n_folds"] == 1
    s = ix.splits
    assert set(s.loc[s["part"] == "test", "clip_id"]) == set(ix.facts["test1"])
    assert set(s.loc[s["part"] != "test", "clip_id"]) == set(ix.facts["train"])
    assert ix.label("sample_00000101") == ix.facts["test1"]["sample_00000101"]
    assert not ix.row("sample_00009001")["labeled"]  # test3 (MER-SEMI) clips are unlabeled


def test_mer2024_stratified_folds_and_pool(shared):
    ix = shared("mer2024")
    test = ix.splits.loc[ix.splits["part"] == "test"]
    assert test.groupby("fold").size().tolist() == [3, 3, 3, 3, 3]
    assert not ix.row("sample_00100001")["labeled"]
    _, again = index("mer2024", params())  # indexing again gives the same splits
    pd.testing.assert_frame_equal(ix.splits, read_splits(again))


def test_msp_improv_sessions(shared):
    ix = shared("msp_improv")
    name = "MSP-IMPROV-S09A-F03-P-FM03"
    fact = ix.facts[name]
    r = ix.row(name)
    assert r["subject"] == "F03" and ix.test_fold(name) == 3
    assert r["audio"].endswith(f"Audio/session3/S09A/P/{name}.wav")
    assert ix.label(name) == {"A": "anger", "H": "happiness", "N": "neutral",
                              "S": "sadness"}[fact["letter"]]
    other = next(n for n, f in ix.facts.items() if f["letter"] == "O")
    assert not ix.row(other)["labeled"]
    assert ix.subjects(3, "test") == {"F03", "M03"}


def test_iemocap_utterances_are_cut_from_dialogs(shared):
    import cv2

    ix = shared("iemocap")
    r = ix.row("Ses02F_impro01_M000")
    assert ix.label("Ses02F_impro01_M000") == "happiness"  # exc merged into happiness
    assert r["subject"] == "Ses02M" and ix.test_fold("Ses02F_impro01_M000") == 2
    assert r["video"] == "data/interim/iemocap/media/Ses02F_impro01_M000.mp4"
    assert r["audio"].endswith("Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_M000.wav")
    cap = cv2.VideoCapture(r["video"])
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    assert 6 <= n <= 10  # 0.8 s at 10 fps
    assert "Ses01F_impro01_F001" not in set(ix.manifest["clip_id"])  # fru: not in the 4 classes
    assert ix.subjects(1, "test") == {"Ses01F", "Ses01M"}


def test_avcaffe_and_werewolf_targets(shared):
    ix = shared("avcaffe")
    r = ix.row("aiim002_task_1_2")
    assert (r["t_arousal"], r["t_valence"], r["subject"]) == (4.0, 3.0, "aiim002")
    assert r["label"] == -1
    # self-reports 4 and 3 are the levels "4" and "3": indices 3 and 2 of the levels 1-5
    assert (r["l_arousal"], r["l_valence"]) == (3, 2)
    for name, fact in ix.facts.items():
        row = ix.row(name)
        assert (row["l_arousal"], row["l_valence"]) == (fact["arousal"] - 1,
                                                        fact["valence"] - 1)
    assert ix.summary["per_label"]["arousal=4"] == sum(
        f["arousal"] == 4 for f in ix.facts.values())
    unlabeled = ix.row("aiim001_task_9_0")
    assert not unlabeled["labeled"] and unlabeled["l_arousal"] == unlabeled["l_valence"] == -1
    ix = shared("werewolf_xl")
    r = ix.row("game01_p03_001")
    assert r["subject"] == "player03" and r["t_dominance"] == pytest.approx(0.2)
    assert np.isnan(ix.row("game01_p99_000")["t_arousal"])


def _frames_and_audio(path: str) -> tuple[int, bool]:
    import cv2

    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    probe = subprocess.run(["ffmpeg", "-hide_banner", "-i", path], capture_output=True, text=True)
    return n, "Audio:" in probe.stderr


def test_samm_onset_to_offset_clips(shared):
    ix = shared("samm")
    assert ix.summary["protocol"]["n_folds"] == 8  # fold k tests subject 00k: 006, 007, 008
    r = ix.row("006_1_2")
    assert r["subject"] == "006" and ix.label("006_1_2") == "anger"
    assert _frames_and_audio(r["video"]) == (8, True)  # onset..offset, silent audio track
    assert not ix.row("008_2_3")["labeled"]  # Disgust: outside the 5 classes
    assert ix.subjects(7, "test") == {"007"}
    assert sorted(ix.splits["fold"].unique()) == [6, 7, 8]
    assert "no subject numbered 5" in ix.summary["unrunnable_folds"]["5"]


def test_casme2_disambiguates_subjects_and_open_offsets(shared):
    ix = shared("casme2")
    for (subj, fname), fact in ix.facts.items():
        cid = f"{subj}_{fname}"
        r = ix.row(cid)
        assert r["subject"] == subj
        assert _frames_and_audio(r["video"])[0] == fact["frames"]
        if fact["emotion"] in registry.get("casme2").labels:
            assert ix.label(cid) == fact["emotion"]
        else:
            assert not r["labeled"]


def test_smic_casme3_mmew(shared):
    ix = shared("smic")
    assert ix.label("s2_po_01") == "positive" and ix.row("s2_po_01")["subject"] == "s2"
    ix = shared("casme3")
    r = ix.row("spNO.2_a")
    assert r["subject"] == "spNO.2" and ix.label("spNO.2_a") == "surprise"
    assert _frames_and_audio(r["video"])[0] == 6
    ix = shared("mmew")
    assert ix.row("S01_happiness_S01_1")["subject"] == "S01"
    assert ix.label("S01_happiness_S01_1") == "happiness"


def test_pools(workdir, monkeypatch):
    ix = prepare("voxceleb2", monkeypatch)
    assert list(ix.manifest["clip_id"]) == ix.facts["ids"]
    assert ix.row("id00015_0fijmz4vTVU_00001")["subject"] == "id00015"
    ix = prepare("avspeech", monkeypatch)
    assert sorted(ix.manifest["clip_id"]) == sorted(ix.facts["ids"])
    ix = prepare("folder", monkeypatch, params(folder_path=str(workdir.parent / "vids")))
    assert sorted(ix.manifest["clip_id"]) == sorted(ix.facts["ids"])
    assert Path(ix.manifest["video"][0]).is_absolute()  # outside the working directory


def test_synthetic_labels_targets_and_speaker_folds(shared):
    ix = shared("synthetic")
    r = ix.row("01-01-08-01-01-01-03")
    assert ix.label("01-01-08-01-01-01-03") == "surprised" and r["label"] == 5
    assert (r["t_valence"], r["t_arousal"]) == (0.2, 0.8)
    assert r["subject"] == "Actor_03"
    pool = ix.row("01-01-00-01-01-01-07")
    assert not pool["labeled"] and np.isnan(pool["t_valence"]) and not ix.parts(pool["clip_id"])
    assert [ix.subjects(k, "test") for k in (1, 2, 3)] == [
        {"Actor_01", "Actor_02"}, {"Actor_03", "Actor_04"}, {"Actor_05", "Actor_06"}]
    for k in (1, 2, 3):
        assert len(ix.subjects(k, "val")) == 1  # round(0.2 * 4) training actors
    assert ix.summary["per_label"] == {n: 6 for n in ix.summary["labels"]}


# ----------------------------------------------------------------------------------------------
# Stage behaviour
# ----------------------------------------------------------------------------------------------


def test_index_before_download_is_a_clear_error(workdir):
    with pytest.raises(DatasetError, match=r"run `avfmae download ravdess` first"):
        index("ravdess", params())


def test_val_fraction_changes_validation_only(workdir, monkeypatch):
    a = prepare("synthetic", monkeypatch, params(val_fraction=0.5)).splits
    assert [len(set(a.loc[(a["fold"] == k) & (a["part"] == "val"), "clip_id"])) // 6
            for k in (1, 2, 3)] == [2, 2, 2]
    b = read_splits(index("synthetic", params())[1])
    assert set(a.loc[a["part"] == "test", "clip_id"]) == set(b.loc[b["part"] == "test", "clip_id"])
    assert (a["part"] == "val").sum() > (b["part"] == "val").sum()


def test_interrupted_index_leaves_the_previous_output(workdir, monkeypatch):
    prepare("mafw11", monkeypatch)
    out = Path("data/interim/mafw11")
    before = (out / "manifest.csv").read_text()
    import avfmae.data.index as ix_mod

    real = ix_mod._write_csv

    def crash(df, path):
        if path.name == "splits.csv":
            raise KeyboardInterrupt
        real(df, path)

    monkeypatch.setattr(ix_mod, "_write_csv", crash)
    with pytest.raises(KeyboardInterrupt):
        index("mafw11", params())
    assert (out / "manifest.csv").read_text() == before and (out / "splits.csv").is_file()
    monkeypatch.setattr(ix_mod, "_write_csv", real)
    index("mafw11", params())
    assert not Path("data/interim/.mafw11.tmp").exists()


def test_malformed_annotations_fail_with_the_file_named(workdir):
    fx.build_dfew(Path("data/licensed/dfew"))
    bad = Path("data/licensed/dfew/EmoLabel_DataSplit/test(single-labeled)/set_2.csv")
    bad.write_text("video_name,label\n2,9\n")
    download("dfew", params())
    with pytest.raises(DatasetError, match=r"set_2.csv \(test, set_2\): clip 00002 has label 9"):
        index("dfew", params())
    assert not Path("data/interim/dfew").exists()


# ----------------------------------------------------------------------------------------------
# Partial copies and local copies
# ----------------------------------------------------------------------------------------------


def _no_network(monkeypatch) -> None:
    def refuse(url, start=0):
        raise AssertionError(f"a local copy must not be downloaded: {url}")

    monkeypatch.setattr(dl, "_request", refuse)


def test_partial_ravdess_copy_keeps_official_folds_without_a_download(workdir, monkeypatch):
    fx.build_ravdess_tree(Path("copies/ravdess"), list(range(5, 25)))
    _no_network(monkeypatch)
    p = params(local_copies={"ravdess": "copies/ravdess"}, folds=[2, 3])
    download("ravdess", p)
    info = json.loads(Path("data/raw/ravdess/source.json").read_text())
    assert info["path"] == str(Path("copies/ravdess").resolve()) and info["files"] == 20 * 3 + 1
    _, splits_path = index("ravdess", p)
    m = read_manifest(Path("data/interim/ravdess/manifest.csv"))
    assert m["video"].str.startswith("copies/ravdess/Actor_").all()
    ix = Indexed({}, m, read_splits(splits_path),
                 json.loads(Path("data/interim/ravdess/index.json").read_text()))
    for k in range(2, 7):  # actor 05 stays in fold 2 with 06-08, as published
        assert ix.subjects(k, "test") == {f"Actor_{a:02d}" for a in range(4 * k - 3, 4 * k + 1)}
    assert sorted(ix.splits["fold"].unique()) == [2, 3, 4, 5, 6]
    assert ix.summary["missing_subjects"] == {"1": [f"Actor_0{a}" for a in range(1, 5)]}
    assert "Actor_01, Actor_02, Actor_03, Actor_04" in ix.summary["unrunnable_folds"]["1"]

    with pytest.raises(DatasetError, match=r"fold 1: no test clips \(its test subjects "
                                           r"Actor_01, Actor_02, Actor_03, Actor_04 are not"):
        index("ravdess", params(local_copies={"ravdess": "copies/ravdess"}, folds=[1, 2]))


def test_three_actor_copy_runs_the_folds_it_can(workdir, monkeypatch):
    fx.build_ravdess_tree(Path("copies/ravdess"), [2, 6, 11])
    _no_network(monkeypatch)
    p = params(local_copies={"ravdess": "copies/ravdess"}, folds=[1, 2, 3])
    download("ravdess", p)
    s = read_splits(index("ravdess", p)[1])
    m = read_manifest(Path("data/interim/ravdess/manifest.csv"))
    test_subject = {k: set(m.loc[m["clip_id"].isin(s.loc[(s["fold"] == k) & (s["part"] == "test"),
                                                            "clip_id"]), "subject"])
                    for k in (1, 2, 3)}
    assert test_subject == {1: {"Actor_02"}, 2: {"Actor_06"}, 3: {"Actor_11"}}
    with pytest.raises(DatasetError, match=r"fold 5: no test clips \(its test subjects "
                                           r"Actor_17, Actor_18, Actor_19, Actor_20"):
        index("ravdess", params(local_copies={"ravdess": "copies/ravdess"}, folds=[3, 5]))
    shutil.rmtree("copies/ravdess/Actor_11")  # two actors: one left to train on, none to validate
    download("ravdess", p)
    with pytest.raises(DatasetError, match=r"fold 1: no val clips \(too few other subjects"):
        index("ravdess", params(local_copies={"ravdess": "copies/ravdess"}, folds=[1]))


def test_a_local_copy_is_checked_before_use(workdir, monkeypatch):
    with fx.FixtureServer(fx.cremad_remote()) as srv:  # an earlier download, on another machine
        download("cremad6", params(mirrors={"cremad6": srv.url}, root="elsewhere"))
    _no_network(monkeypatch)
    fx.build_ravdess_tree(Path("data/raw/ravdess"), [1])
    with pytest.raises(DatasetError, match=r"inside data/raw/ravdess, the download stage's "):
        download("ravdess", params(local_copies={"ravdess": "data/raw/ravdess/"}))
    Path("copies/flat").mkdir(parents=True)
    (Path("copies/flat") / "01-01-01-01-01-01-01.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"not a copy of RAVDESS .*Actor_\*/\*\.mp4"):
        download("ravdess", params(local_copies={"ravdess": "copies/flat"}))
    # a copy made by an earlier download carries the publisher's checksums: they are verified
    shutil.copytree("elsewhere/raw/cremad6", "copies/cremad")
    p = params(local_copies={"cremad6": "copies/cremad"})
    download("cremad6", p)
    assert index("cremad6", p)[0].is_file()
    victim = next(Path("copies/cremad/AudioWAV").glob("*.wav"))
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=rf"do not match the checksums .*{victim.name}"):
        download("cremad6", p)


def test_partial_loso_copy_keeps_each_subjects_fold(workdir):
    """Leave-one-subject-out without an official list: a subject's fold is the number in its
    id, whatever else the copy holds; folds asked of missing subjects, or beyond the last, are
    an error that names the folds the copy can run."""
    root = Path("data/licensed/samm")
    fx.build_samm(root, subjects=(6, 7, 8, 9))
    shutil.rmtree(root / "006")  # its sheet rows remain: the frames of subject 006 are missing
    download("samm", params(folds=[7, 9]))
    manifest_path, splits_path = index("samm", params(folds=[7, 9]))
    ix = Indexed({}, read_manifest(manifest_path), read_splits(splits_path),
                 json.loads((manifest_path.parent / "index.json").read_text()))
    assert ix.subjects(7, "test") == {"007"} and ix.subjects(9, "test") == {"009"}
    assert sorted(ix.splits["fold"].unique()) == [7, 8, 9]
    for folds, why in (([6, 7], "fold 6: no test clips (no subject numbered 6 is in the copy)"),
                       ([10], "fold 10: the protocol has folds 1..9")):
        with pytest.raises(DatasetError, match=re.escape(why) + r".*Folds it can run: 7-9;"):
            index("samm", params(folds=folds))


@pytest.mark.parametrize("ds, videos, gone", [
    ("avcaffe", "videos/aiim002", "aiim002"),
    ("werewolf_xl", "video/game01/game01_p02_*.mp4", "player02"),
])
def test_partial_block_copy_keeps_the_label_files_blocks(workdir, ds, videos, gone):
    """Subject blocks without a published list are cut from the subjects the label file names:
    the videos of subject 2 missing, subject 3 is still tested in fold 3, not moved to fold 2."""
    root = Path(f"data/licensed/{ds}")
    getattr(fx, f"build_{ds}")(root)
    for path in root.glob(videos):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    download(ds, params(folds=[1, 3, 4, 5]))
    manifest_path, splits_path = index(ds, params(folds=[1, 3, 4, 5]))
    ix = Indexed({}, read_manifest(manifest_path), read_splits(splits_path),
                 json.loads((manifest_path.parent / "index.json").read_text()))
    subject = gone.replace("2", "{}")
    for k in (1, 3, 4):
        assert ix.subjects(k, "test") == {subject.format(k)}
    assert ix.subjects(5, "test") == {subject.format(5), subject.format(6)}
    assert ix.summary["missing_subjects"] == {"2": [gone]}
    with pytest.raises(DatasetError, match=rf"fold 2: no test clips \(its test subjects {gone} "):
        index(ds, params(folds=[2]))


@pytest.mark.parametrize("subjects, error", [
    (("s1", "s01"), "subjects s01, s1 carry the same number 1"),
    (("s1", "s2_b3"), "subject 's2_b3' has several"),
    (("s1", "sX"), "subject 'sX' has no number"),
])
def test_loso_folds_need_one_number_per_subject(subjects, error):
    clips = [Clip(f"c{i}", subject=s, label="negative") for i, s in enumerate(subjects)]
    with pytest.raises(DatasetError, match=re.escape(error)):
        assign_folds(registry.get("smic"), clips)
