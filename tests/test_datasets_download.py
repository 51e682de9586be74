"""The download stage: resumable checksummed fetches, safe extraction, licensed-copy checks."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from avfmae.config import DataConfig, Params
from avfmae.data import download as dl
from avfmae.data import registry
from avfmae.data.download import download, fetch, licensed_guidance, safe_extract
from avfmae.data.registry import DatasetError
from fixtures.datasets import builders as fx


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(dl, "BACKOFF_S", 0.01)


def params(**data) -> Params:
    base = {"root": "data", "licensed_root": "data/licensed"}
    return dataclasses.replace(Params(), data=dataclasses.replace(DataConfig(), **{**base, **data}))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------------------------
# fetch
# ----------------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 4000  # 1 MB


def test_truncated_download_is_resumed_with_a_range_request(tmp_path):
    with fx.FixtureServer({"/f.bin": PAYLOAD}) as srv:
        srv.truncate_once.add("/f.bin")
        out = fetch(f"{srv.url}/f.bin", tmp_path / "f.bin",
                    md5=hashlib.md5(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    ranges = [r for p, r in srv.requests if p == "/f.bin"]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(PAYLOAD) // 2}-"  # continued where the cut left off
    assert not (tmp_path / "f.bin.part").exists()


def test_partial_file_of_an_earlier_run_is_continued(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    with fx.FixtureServer({"/f.bin": PAYLOAD}) as srv:
        fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert srv.requests == [("/f.bin", "bytes=1000-")]


def test_checksum_mismatch_fails_and_deletes_the_download(tmp_path):
    wrong = hashlib.md5(b"something else").hexdigest()
    with fx.FixtureServer({"/f.bin": PAYLOAD}) as srv:
        with pytest.raises(DatasetError) as err:
            fetch(f"{srv.url}/f.bin", tmp_path / "f.bin", md5=wrong)
    msg = str(err.value)
    assert "checksum mismatch for f.bin" in msg
    assert f"expected md5 {wrong}, got {hashlib.md5(PAYLOAD).hexdigest()}" in msg
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_missing_remote_file_is_a_clear_error(tmp_path):
    with fx.FixtureServer({}) as srv:
        with pytest.raises(DatasetError, match="HTTP 404"):
            fetch(f"{srv.url}/nope.zip", tmp_path / "nope.zip", md5="0" * 32)


# ----------------------------------------------------------------------------------------------
# safe extraction
# ----------------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: dict[str, bytes], links: list[tuple[str, str, bytes]] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return path


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", [
    "zip_dotdot", "zip_absolute", "zip_symlink_escape", "tar_dotdot", "tar_absolute",
    "tar_symlink_escape", "tar_hardlink_escape",
])
def test_archive_slip_is_rejected_with_nothing_written(tmp_path, case):
    target = tmp_path / "sandbox" / "target"
    target.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    good = {"ok/inside.txt": b"fine"}
    arch = tmp_path / f"{case}.{'zip' if case.startswith('zip') else 'tar.gz'}"
    if case == "zip_dotdot":
        _zip(arch, {**good, "../../outside.txt": b"evil"})
    elif case == "zip_absolute":
        _zip(arch, {**good, str(outside): b"evil"})
    elif case == "zip_symlink_escape":
        _zip(arch, {**good, "link/outside.txt": b"evil"}, symlinks={"link": str(tmp_path)})
    elif case == "tar_dotdot":
        _tar(arch, {**good, "a/../../../outside.txt": b"evil"})
    elif case == "tar_absolute":
        _tar(arch, {**good, str(outside): b"evil"})
    elif case == "tar_symlink_escape":
        _tar(arch, {**good, "link/outside.txt": b"evil"},
             links=[("link", "../..", tarfile.SYMTYPE)])
    elif case == "tar_hardlink_escape":
        _tar(arch, good, links=[("hard", "../../outside.txt", tarfile.LNKTYPE)])
    before = _all_files(tmp_path)
    with pytest.raises(DatasetError, match="unsafe member"):
        safe_extract(arch, target)
    assert not outside.exists()
    assert _all_files(tmp_path) == before  # nothing written anywhere, target included
    assert list(target.iterdir()) == []


def test_safe_archive_extracts_plain_members(tmp_path):
    z = _zip(tmp_path / "b.zip", {"Actor_01/a.mp4": b"a", "Actor_01/b.mp4": b"b"})
    safe_extract(z, tmp_path / "t")
    t = _tar(tmp_path / "c.tar.gz", {"Actor_02/c.mp4": b"c"})
    safe_extract(t, tmp_path / "t")
    assert sorted(p.name for p in (tmp_path / "t" / "Actor_01").iterdir()) == ["a.mp4", "b.mp4"]
    assert (tmp_path / "t" / "Actor_02" / "c.mp4").read_bytes() == b"c"
    assert not any(p.name.startswith(".extract") for p in (tmp_path / "t").iterdir())


@pytest.mark.parametrize("chain", [
    # each link is lexically inside the target; together they lead out of it
    {"links": {"a": "."}, "members": {"a/a/a/x.txt": b"ok"}},
    {"links": {"a": ".", "a/b": "a", "a/b/up": "..", "d": "a/b/up/.."},
     "members": {"d/outside.txt": b"evil"}},
    {"links": {"sub/here": ".", "sub/here/there": "here", "sub/here/there/far": ".."},
     "members": {"sub/here/there/far/far2/outside.txt": b"evil"}},
    {"links": {"inner.txt": "x.txt"}, "members": {"x.txt": b"x"}},  # even a harmless alias
])
def test_chained_links_in_a_zip_are_refused_with_nothing_written(tmp_path, chain):
    target = tmp_path / "sandbox" / "target"
    target.mkdir(parents=True)
    arch = tmp_path / "chain.zip"
    with zipfile.ZipFile(arch, "w") as zf:  # links first, so later members go through them
        for name, link in chain["links"].items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, link)
        for name, data in chain["members"].items():
            zf.writestr(name, data)
    before = _all_files(tmp_path)
    with pytest.raises(DatasetError, match="symbolic link .archives with links are refused") as e:
        safe_extract(arch, target)
    assert all(repr(name) in str(e.value) for name in chain["links"])
    assert _all_files(tmp_path) == before and list(target.iterdir()) == []


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused_even_when_each_stays_inside(tmp_path, kind):
    target = tmp_path / "t"
    links = [("a", ".", kind), ("a/b", "a", kind)] if kind == tarfile.SYMTYPE else \
        [("h1", "x.txt", kind), ("h2", "h1", kind)]
    arch = _tar(tmp_path / "l.tar.gz", {"x.txt": b"x"}, links=links)
    with pytest.raises(DatasetError, match="link to 'a'|link to 'h1'"):
        safe_extract(arch, target)
    assert list(target.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# public datasets
# ----------------------------------------------------------------------------------------------


def test_ravdess_download_from_a_zenodo_mirror(workdir):
    files, archives = fx.ravdess_remote()
    with fx.FixtureServer(files) as srv:
        srv.truncate_once.add("/records/1188976/files/Video_Speech_Actor_07.zip")
        out = download("ravdess", params(mirrors={"ravdess": srv.url}))
        n_requests = len(srv.requests)
        assert download("ravdess", params(mirrors={"ravdess": srv.url})) == out
        # a complete, current download is kept: only the record listing is read again
        assert [p for p, _ in srv.requests[n_requests:]] == ["/api/records/1188976"]
    assert out == Path("data/raw/ravdess")
    assert (out / "Actor_12" / "01-01-06-01-02-01-12.mp4").is_file()
    assert len(list(out.glob("Actor_*/*.mp4"))) == sum(len(fx.ravdess_names(a))
                                                       for a in range(1, 25))
    src = json.loads((out / "source.json").read_text())
    assert {f["path"]: f["md5"] for f in src["files"]}["Video_Speech_Actor_07.zip"] == \
        hashlib.md5(archives["Video_Speech_Actor_07.zip"]).hexdigest()
    assert not Path("data/raw/.ravdess.download").exists()
    # the cut archive was resumed, not restarted
    assert ("/records/1188976/files/Video_Speech_Actor_07.zip", None) in srv.requests
    assert any(p.endswith("Actor_07.zip") and r for p, r in srv.requests)


def test_corrupt_archive_fails_the_stage_without_output(workdir, monkeypatch):
    files, archives = fx.ravdess_remote()
    files["/records/1188976/files/Video_Speech_Actor_03.zip"] = b"corrupted" * 10
    with fx.FixtureServer(files) as srv:
        monkeypatch.setenv("AVFMAE_MIRROR_RAVDESS", srv.url)  # the environment works too
        with pytest.raises(DatasetError, match="checksum mismatch for Video_Speech_Actor_03.zip"):
            download("ravdess", params())
    assert not Path("data/raw/ravdess").exists()
    # finished archives were kept for the next run
    assert Path("data/raw/.ravdess.download/archives/Video_Speech_Actor_01.zip.extracted").exists()


def test_zip_slip_in_a_published_archive_fails_the_download(workdir, tmp_path):
    files, archives = fx.ravdess_remote()
    evil = fx._zip_bytes({"Actor_05/ok.mp4": b"x", "../../../escaped.txt": b"evil"})
    archives["Video_Speech_Actor_05.zip"] = evil
    files["/records/1188976/files/Video_Speech_Actor_05.zip"] = evil
    files["/api/records/1188976"] = fx.zenodo_listing("1188976", archives)
    with fx.FixtureServer(files) as srv:
        with pytest.raises(DatasetError, match="refusing to extract Video_Speech_Actor_05.zip"):
            download("ravdess", params(mirrors={"ravdess": srv.url}))
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not Path("data/raw/ravdess").exists()


def test_cremad_download_verifies_lfs_objects_and_shares_with_its_variant(workdir):
    files = fx.cremad_remote()
    with fx.FixtureServer(files) as srv:
        out = download("cremad6", params(mirrors={"cremad6": srv.url, "cremad4": srv.url}))
        n = len(fx.cremad_names())
        assert len(list((out / "VideoFlash").glob("*.flv"))) == n
        assert len(list((out / "AudioWAV").glob("*.wav"))) == n
        media_gets = sum(1 for p, _ in srv.requests if p.startswith("/media/"))
        assert media_gets == 2 * n
        out4 = download("cremad4", params(mirrors={"cremad4": srv.url}))
        # the 4-class variant reuses the verified files: pointers fetched, media not again
        assert sum(1 for p, _ in srv.requests if p.startswith("/media/")) == media_gets
    a, b = out / "AudioWAV" / "1001_IEO_ANG_XX.wav", out4 / "AudioWAV" / "1001_IEO_ANG_XX.wav"
    assert a.read_bytes() == b.read_bytes() == fx.media().wav.read_bytes()


def test_cremad_lfs_checksum_mismatch(workdir):
    files = fx.cremad_remote()
    files["/media/AudioWAV/1001_IEO_ANG_XX.wav"] = b"RIFF-but-not-the-right-bytes"
    with fx.FixtureServer(files) as srv:
        with pytest.raises(DatasetError, match=r"1001_IEO_ANG_XX.wav.*checksum mismatch"):
            download("cremad6", params(mirrors={"cremad6": srv.url}))
    assert not Path("data/raw/cremad6").exists()


# ----------------------------------------------------------------------------------------------
# licensed and user-placed datasets
# ----------------------------------------------------------------------------------------------


def test_absent_licensed_dataset_gives_the_guidance_message(workdir):
    spec = registry.get("mafw11")
    root = Path("data/licensed/mafw")
    with pytest.raises(DatasetError) as err:
        download("mafw11", params())
    assert str(err.value) == licensed_guidance(spec, root, list(spec.source.expect))
    assert str(err.value) == (
        "MAFW (11-class) (mafw11) is license-gated and not available: data/licensed/mafw does "
        "not exist. Obtain it from the MAFW team (Liu et al., ACM MM 2022) "
        "(https://mafw-database.github.io/MAFW/): sign the MAFW End User License Agreement and "
        "send it to the authors as the project page describes; they reply with the download "
        "link. Then place your copy at data/licensed/mafw so that these exist: "
        "data/licensed/mafw/data/clips/*.mp4, data/licensed/mafw/Train & Test Set/*/no_caption/"
        "set_1/train.txt (or point data.licensed_root elsewhere), and rerun "
        "`avfmae download mafw11`."
    )
    assert not Path("data/raw/mafw11").exists()


def test_incomplete_licensed_copy_names_what_is_missing(workdir):
    Path("data/licensed/dfew/Clip/original").mkdir(parents=True)
    (Path("data/licensed/dfew/Clip/original") / "00001.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError) as err:
        download("dfew", params())
    assert "data/licensed/dfew has nothing matching EmoLabel_DataSplit/test(single-labeled)/" \
           "set_1.csv" in str(err.value)
    assert "https://dfew-dataset.github.io/" in str(err.value)


@pytest.mark.parametrize("ds", sorted(fx.LICENSED_BUILDERS))
def test_every_licensed_fixture_passes_the_structure_check(workdir, ds):
    folder, build = fx.LICENSED_BUILDERS[ds]
    build(Path("data/licensed") / folder)
    out = download(ds, params())
    info = json.loads((out / "source.json").read_text())
    assert info["kind"] in ("licensed", "user") and info["files"] > 0
    assert [p.name for p in out.iterdir()] == ["source.json"]  # media stay where they are
    # the fingerprint changes when the copy changes (so the index stage reruns)
    extra = Path("data/licensed") / folder / "added.txt"
    extra.write_text("x")
    assert json.loads((download(ds, params()) / "source.json").read_text())[
        "listing_sha256"] != info["listing_sha256"]


def test_folder_pool_uses_data_folder_path(workdir):
    with pytest.raises(DatasetError, match=r"put any face videos"):
        download("folder", params(folder_path="my_videos"))
    fx.build_folder(Path("my_videos"))
    out = download("folder", params(folder_path="my_videos"))
    assert json.loads((out / "source.json").read_text())["path"] == str(workdir / "my_videos")


def test_synthetic_download_calls_the_generator(workdir, monkeypatch):
    import avfmae.data.synthetic.variants as variants

    calls = []

    def fake_generate(cfg, out_dir, workers=0, codes=None):
        calls.append((cfg, Path(out_dir)))
        fx.build_synthetic(Path(out_dir))
        return Path(out_dir)

    monkeypatch.setattr(variants, "generate", fake_generate)
    p = params()
    out = download("synthetic", p)
    assert out == Path("data/raw/synthetic") and (out / "synthetic.json").is_file()
    assert calls[0] == (p.data.synthetic, Path("data/raw/synthetic"))
