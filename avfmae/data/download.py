"""The ``download`` stage: fetch a public dataset, check a licensed one, generate the synthetic one.

``download(ds, params) -> Path`` leaves ``{data.root}/raw/{ds}`` complete or not at all: work
happens in ``{data.root}/raw/.{ds}.download/`` (kept between runs, so an interrupted download
resumes), and the finished tree is renamed into place.

- public (RAVDESS on Zenodo, CREMA-D's Git LFS objects on GitHub): every file is fetched with
  HTTP Range resume, verified against its checksum (pinned in the registry, else the one the
  publisher lists: Zenodo's record MD5s, the SHA-256 of a Git LFS pointer) and archives are
  extracted only after every member was checked: absolute paths, ``..`` components, links of
  any kind and device files make the whole archive fail with nothing extracted.
  ``data.mirrors[ds]`` or the environment variable ``AVFMAE_MIRROR_<DS>`` replaces the hosts
  (Zenodo: ``{base}/api/records/<id>`` and ``{base}/records/<id>/files/<key>``; Git LFS:
  ``{base}/raw/<path>`` for pointers and ``{base}/media/<path>`` for content).
- licensed/user: the copy under ``{data.licensed_root}/<dir>`` (or ``data.folder_path``) is
  checked for the expected structure; when absent, the stage stops with what to obtain, from
  whom and where to put it. The output is only ``source.json`` (where the copy is and a
  fingerprint of its file list), so licensed media never enter the DVC cache.
- local copy (``data.local_copies[ds]``, any public or licensed dataset): the folder is read
  in place like a licensed copy; it must lie outside ``{data.root}/raw/{ds}``, match the
  registry's expected layout and, when it holds the ``source.json`` of an earlier download, the
  checksums listed there. Nothing is fetched.
- generated: ``avfmae.data.synthetic.generate``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING

from avfmae import pipeline
from avfmae.data import locations, registry
from avfmae.data.registry import DatasetError, DatasetSpec

if TYPE_CHECKING:
    from avfmae.config import Params

__all__ = [
    "download",
    "fetch",
    "safe_extract",
    "licensed_guidance",
    "fingerprint",
    "Item",
]

log = logging.getLogger(__name__)

USER_AGENT = "avfmae-download/0.1 (+https://github.com/)"
CHUNK = 1 << 20
RETRIES = 5
TIMEOUT = 60.0
BACKOFF_S = 1.0


# ----------------------------------------------------------------------------------------------
# HTTP with resume and checksums
# ----------------------------------------------------------------------------------------------


def _request(url: str, start: int = 0):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def _get_bytes(url: str) -> bytes:
    """Small documents (listings, pointers), retried like downloads."""
    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            with _request(url) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            if err.code < 500:
                raise DatasetError(f"GET {url} failed: HTTP {err.code} {err.reason}") from None
            last = err
        except (urllib.error.URLError, HTTPException, OSError) as err:
            last = err
        time.sleep(min(BACKOFF_S * (attempt + 1), 10.0))
    raise DatasetError(f"GET {url} failed after {RETRIES} attempts: {last}")


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, md5: str, sha256: str) -> tuple[bool, str, str]:
    algo, want = ("sha256", sha256) if sha256 else ("md5", md5)
    if not want:
        raise DatasetError(f"no checksum known for {path.name}: refusing to use it unverified")
    got = _digest(path, algo)
    return got == want.lower(), algo, got


def fetch(url: str, dest: Path, *, md5: str = "", sha256: str = "", size: int | None = None,
          ) -> Path:
    """Download ``url`` to ``dest`` with resume, then verify its checksum.

    Bytes go to ``dest.part``; a retry or a later run continues it with an HTTP Range request
    (a server that ignores Range restarts it from zero). On a checksum mismatch the partial file
    is deleted and :class:`DatasetError` names the expected and the received digest. An existing
    ``dest`` with the right checksum is kept as is.
    """
    if dest.is_file():
        ok, _, _ = _check(dest, md5, sha256)
        if ok:
            return dest
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last: Exception | None = None
    for attempt in range(RETRIES):
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        if size is not None and have == size:
            break
        try:
            with _request(url, have) as resp:
                status = getattr(resp, "status", 200)
                if have and status == 206:
                    start = _range_start(resp.headers.get("Content-Range", ""))
                    if start != have:
                        raise HTTPException(f"server resumed at byte {start}, not {have}")
                    mode = "ab"
                else:
                    mode = "wb"
                with open(part, mode) as f:
                    while block := resp.read(CHUNK):
                        f.write(block)
            if size is None or part.stat().st_size >= size:
                break
            last = HTTPException(f"connection closed at byte {part.stat().st_size} of {size}")
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # nothing left to send: the part is complete
                break
            if err.code < 500:
                raise DatasetError(f"download of {url} failed: HTTP {err.code} {err.reason}") \
                    from None
            last = err
        except (urllib.error.URLError, HTTPException, OSError) as err:
            last = err
        log.warning("download %s interrupted (%s); resuming", url, last)
        time.sleep(min(BACKOFF_S * (attempt + 1), 10.0))
    else:
        raise DatasetError(
            f"download of {url} failed after {RETRIES} attempts ({last}); rerun to resume it"
        )
    ok, algo, got = _check(part, md5, sha256)
    if not ok:
        part.unlink(missing_ok=True)
        want = sha256 or md5
        raise DatasetError(
            f"checksum mismatch for {dest.name} from {url}: expected {algo} {want}, got {got}; "
            "the corrupt download was deleted, rerun to fetch it again"
        )
    os.replace(part, dest)
    return dest


def _range_start(content_range: str) -> int | None:
    m = re.match(r"bytes\s+(\d+)-", content_range)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------------
# Safe extraction
# ----------------------------------------------------------------------------------------------


def _bad_name(name: str) -> str | None:
    if not name:
        return "empty member name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "'..' path component"
    if "\x00" in name:
        return "NUL in name"
    return None


def _zip_problems(zf: zipfile.ZipFile) -> list[str]:
    problems = []
    for info in zf.infolist():
        why = _bad_name(info.filename)
        if not why and stat.S_ISLNK(info.external_attr >> 16):
            why = "symbolic link (archives with links are refused)"
        elif not why and stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG,
                                                                          stat.S_IFDIR):
            why = "device, fifo or socket"
        if why:
            problems.append(f"{info.filename!r}: {why}")
    return problems


def _tar_problems(tf: tarfile.TarFile) -> list[str]:
    problems = []
    for m in tf.getmembers():
        why = _bad_name(m.name)
        if not why and m.issym():
            why = f"symbolic link to {m.linkname!r} (archives with links are refused)"
        elif not why and m.islnk():
            why = f"hard link to {m.linkname!r} (archives with links are refused)"
        elif not why and not (m.isfile() or m.isdir()):
            why = "device, fifo or other special member"
        if why:
            problems.append(f"{m.name!r}: {why}")
    return problems


def _inside(path: Path, root: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


def _extract_zip(zf: zipfile.ZipFile, dest: Path) -> None:
    for info in zf.infolist():
        out = dest / info.filename.replace("\\", "/")
        if not _inside(out.parent, dest):
            raise DatasetError(f"{info.filename!r} would be written outside {dest}")
        if info.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(out.parent, dest):
            raise DatasetError(f"{info.filename!r} would be written outside {dest}")
        # O_NOFOLLOW | O_EXCL: never write through a link, never reuse a path twice
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with zf.open(info) as src, open(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)


def _merge_move(src: Path, dst: Path) -> None:
    """Move the entries of ``src`` into ``dst``, merging folders that already exist."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _merge_move(entry, target)
            entry.rmdir()
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip or tar archive into ``target``, or nothing at all.

    Every member is checked first; absolute names, ``..`` components, any symbolic or hard
    link and device/fifo members fail the whole archive with :class:`DatasetError` listing each
    offending member. Links are refused outright rather than resolved: chains of links that
    are each harmless (a link to ``.``, then links through it) can lead a later member outside
    the target, and no supported dataset ships links. Members are then written to a staging
    folder inside ``target`` (tar through Python's ``data`` extraction filter as a second guard)
    and moved into place.
    """
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".extract-{archive.name}"
    if staging.exists():
        shutil.rmtree(staging)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            problems = _zip_problems(zf)
            if problems:
                raise DatasetError(_unsafe(archive, problems))
            staging.mkdir()
            try:
                _extract_zip(zf, staging)
            except OSError as err:
                shutil.rmtree(staging, ignore_errors=True)
                raise DatasetError(f"{archive.name}: extraction failed: {err}") from None
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            problems = _tar_problems(tf)
            if problems:
                raise DatasetError(_unsafe(archive, problems))
            staging.mkdir()
            try:
                tf.extractall(staging, filter="data")
            except (tarfile.TarError, OSError) as err:
                shutil.rmtree(staging, ignore_errors=True)
                raise DatasetError(f"{archive.name}: extraction failed: {err}") from None
    else:
        raise DatasetError(f"{archive.name} is neither a zip nor a tar archive")
    _merge_move(staging, target)
    shutil.rmtree(staging, ignore_errors=True)


def _unsafe(archive: Path, problems: list[str]) -> str:
    return (f"refusing to extract {archive.name}: {len(problems)} unsafe member(s), nothing "
            "was extracted:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------------------------
# Public sources
# ----------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One file to fetch: its path in the dataset tree, URL and checksum."""

    path: str
    url: str
    md5: str = ""
    sha256: str = ""
    size: int | None = None
    extract: bool = False


def _zenodo_items(spec: DatasetSpec, base: str) -> list[Item]:
    src = spec.source
    listing_url = f"{base}/api/records/{src.record}"
    try:
        record = json.loads(_get_bytes(listing_url))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{listing_url}: not a Zenodo record listing ({err})") from None
    listed = {f.get("key") or f.get("filename"): f for f in record.get("files", [])}
    items = []
    for rf in src.files:
        entry = listed.get(rf.name)
        if entry is None:
            raise DatasetError(f"Zenodo record {src.record} lists no file {rf.name} "
                               f"({listing_url})")
        checksum = str(entry.get("checksum", ""))
        algo, _, value = checksum.partition(":")
        md5 = rf.md5 or (value if algo == "md5" else "")
        if rf.md5 and algo == "md5" and value and value != rf.md5:
            raise DatasetError(f"{rf.name}: the record lists md5 {value}, the registry pins "
                               f"{rf.md5}; the published file changed")
        if not md5 and not rf.sha256:
            raise DatasetError(f"{rf.name}: no checksum in the record listing {listing_url}")
        items.append(Item(rf.name, f"{base}/records/{src.record}/files/{rf.name}?download=1",
                          md5=md5, sha256=rf.sha256, size=rf.size or entry.get("size"),
                          extract=rf.extract))
    return items


def _lfs_pointer(text: str) -> tuple[str, int] | None:
    if not text.startswith("version https://git-lfs"):
        return None
    oid = re.search(r"^oid sha256:([0-9a-f]{64})$", text, re.M)
    size = re.search(r"^size (\d+)$", text, re.M)
    return (oid.group(1), int(size.group(1))) if oid and size else None


def _lfs_names(listing: bytes) -> list[str]:
    rows = list(csv.reader(io.StringIO(listing.decode("utf-8-sig", "replace"))))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    col = header.index("filename") if "filename" in header else len(header) - 1
    return [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]


def _lfs_items(spec: DatasetSpec, raw_base: str, media_base: str) -> list[Item]:
    src = spec.source
    names = _lfs_names(_get_bytes(f"{raw_base}/{src.record}"))
    if not names:
        raise DatasetError(f"{raw_base}/{src.record}: empty file listing")
    paths = [rf.name.format(name=n) for n in names for rf in src.files]

    def pointer(path: str) -> Item:
        url = f"{raw_base}/{path}"
        parsed = _lfs_pointer(_get_bytes(url).decode("utf-8", "replace"))
        if parsed is None:
            raise DatasetError(f"{url} is not a Git LFS pointer: no checksum to verify {path}")
        return Item(path, f"{media_base}/{path}", sha256=parsed[0], size=parsed[1])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(pointer, paths))


def _reuse_from_sibling(spec: DatasetSpec, item: Item, dest: Path, raw_root: Path) -> bool:
    """Hard-link (or copy) an identical, verified file from an earlier download of this dataset
    or of one sharing its source (CREMA-D's two label sets)."""
    for other in (spec.name, *spec.source.share_with):
        cand = raw_root / other / item.path
        if cand.is_file() and (item.size is None or cand.stat().st_size == item.size) and \
                _check(cand, item.md5, item.sha256)[0]:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(cand, dest)
            except OSError:
                shutil.copy2(cand, dest)
            return True
    return False


def _fetch_public(ds: str, spec: DatasetSpec, params: Params) -> Path:
    src = spec.source
    out = pipeline.path("download", "raw", params, ds=ds)
    work = out.with_name(f".{ds}.download")
    tree = work / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    base = locations.mirror(ds, params)
    if src.fetcher == "zenodo":
        items = _zenodo_items(spec, base or src.base_url("zenodo"))
    elif src.fetcher == "git_lfs":
        raw_base = f"{base}/raw" if base else src.base_url("raw")
        media_base = f"{base}/media" if base else src.base_url("media")
        items = _lfs_items(spec, raw_base, media_base)
    else:
        raise DatasetError(f"{ds}: unknown fetcher {src.fetcher!r}")
    listing = [{"path": i.path, "md5": i.md5 or None, "sha256": i.sha256 or None, "size": i.size}
               for i in items]
    if _complete(out, listing):
        log.info("download %s: %s is complete and current", ds, out)
        shutil.rmtree(work, ignore_errors=True)
        return out

    extract_lock = threading.Lock()

    def get(item: Item) -> None:
        if item.extract:
            marker = work / "archives" / f"{item.path}.extracted"
            if marker.is_file():
                return
            archive = fetch(item.url, work / "archives" / item.path, md5=item.md5,
                            sha256=item.sha256, size=item.size)
            with extract_lock:
                safe_extract(archive, tree)
                marker.write_text("ok\n")
            archive.unlink()
        else:
            dest = tree / item.path
            if dest.is_file() and _check(dest, item.md5, item.sha256)[0]:
                return
            if not _reuse_from_sibling(spec, item, dest, out.parent):
                fetch(item.url, dest, md5=item.md5, sha256=item.sha256, size=item.size)

    log.info("download %s: %d file(s) from %s", ds, len(items), base or src.url)
    bar = _progress(len(items), f"download {ds}")
    workers = 2 if any(i.extract for i in items) else 8
    errors: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        for item, fut in [(i, pool.submit(get, i)) for i in items]:
            try:
                fut.result()
            except DatasetError as err:
                errors.append(f"{item.path}: {err}")
            bar.update(1)
    bar.close()
    if errors:
        raise DatasetError(f"download of {ds} failed for {len(errors)} file(s) (finished files "
                           "are kept; rerun to resume):\n  " + "\n  ".join(errors[:50]))
    manifest = {"dataset": ds, "kind": "public", "source": src.url, "files": listing}
    (tree / "source.json").write_text(json.dumps(manifest, indent=1) + "\n")
    _swap_in(tree, out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _complete(out: Path, listing: list[dict]) -> bool:
    """``out`` was downloaded from exactly these files (same names and checksums)."""
    try:
        return json.loads((out / "source.json").read_text())["files"] == listing
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _progress(total: int, desc: str):
    from avfmae.progress import progress

    return progress(total, desc, unit="file", disable=total < 2, leave=False)


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if old.exists() or old.is_symlink():
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    if out.exists() or out.is_symlink():
        os.rename(out, old)
    os.rename(tmp, out)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Licensed / user-placed sources
# ----------------------------------------------------------------------------------------------


def _matches(root: Path, pattern: str) -> bool:
    for alt in pattern.split("|"):
        if next(iter(root.glob(alt)), None) is not None:
            return True
    return False


def licensed_guidance(spec: DatasetSpec, root: Path, missing: list[str]) -> str:
    """The message that stops ``download`` when a user-placed copy is absent or incomplete."""
    src = spec.source
    if not root.is_dir():
        problem = f"{root} does not exist"
    else:
        problem = f"{root} has nothing matching {', '.join(missing)}"
    shape = ", ".join(" or ".join(f"{root}/{alt}" for alt in p.split("|")) for p in src.expect)
    if src.kind == "user":
        return (f"{spec.title} ({spec.name}): {problem}. To use it, {src.obtain}; then rerun "
                f"`avfmae download {spec.name}`.")
    return (f"{spec.title} ({spec.name}) is license-gated and not available: {problem}. "
            f"Obtain it from {src.provider} ({src.url}): {src.obtain}. "
            f"Then place your copy at {root} so that these exist: {shape} "
            f"(or point data.licensed_root elsewhere), and rerun `avfmae download {spec.name}`.")


def fingerprint(root: Path) -> dict:
    """File count, total bytes and a SHA-256 of the sorted (path, size) list under ``root``."""
    h = hashlib.sha256()
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            try:
                n = os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            h.update(f"{posixpath.join(rel, name) if rel != '.' else name}\t{n}\n".encode())
            files += 1
            size += n
    return {"files": files, "bytes": size, "listing_sha256": h.hexdigest()}


def _check_placed(ds: str, spec: DatasetSpec, params: Params) -> Path:
    root = locations.media_root(ds, params)
    missing = [p for p in spec.source.expect if not root.is_dir() or not _matches(root, p)]
    if locations.local_copy(ds, params) is not None:
        _check_local_copy(ds, spec, root, missing, params)
    elif not root.is_dir() or missing:
        raise DatasetError(licensed_guidance(spec, root, missing))
    out = pipeline.path("download", "raw", params, ds=ds)
    tmp = out.with_name(f".{ds}.download")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    info = {"dataset": ds, "kind": spec.source.kind, "path": os.path.abspath(root),
            **fingerprint(root)}
    (tmp / "source.json").write_text(json.dumps(info, indent=1) + "\n")
    _swap_in(tmp, out)
    log.info("download %s: using the copy at %s (%d files)", ds, root, info["files"])
    return out


def _check_local_copy(ds: str, spec: DatasetSpec, root: Path, missing: list[str],
                      params: Params) -> None:
    """A ``data.local_copies`` folder: outside the stage's output (which DVC replaces on every
    rerun), in the publisher's layout, and matching the checksums it carries."""
    raw = pipeline.path("download", "raw", params, ds=ds)
    if _inside(root, raw):
        raise DatasetError(f"data.local_copies.{ds}: {root} is inside {raw}, the download "
                           "stage's output, which the pipeline replaces; move the copy elsewhere "
                           "and point data.local_copies at it")
    if not root.is_dir():
        raise DatasetError(f"data.local_copies.{ds}: {root} does not exist")
    if missing:
        shape = ", ".join(" or ".join(p.split("|")) for p in spec.source.expect)
        raise DatasetError(f"data.local_copies.{ds}: {root} is not a copy of {spec.title}: "
                           f"nothing matches {', '.join(missing)} (expected layout: {shape})")
    bad = _listed_checksum_failures(root)
    if bad:
        raise DatasetError(f"data.local_copies.{ds}: {len(bad)} file(s) of {root} do not match "
                           "the checksums in its source.json: " + ", ".join(bad[:20]))


def _listed_checksum_failures(root: Path) -> list[str]:
    """Files whose checksum differs from the publisher's, as a ``source.json`` of an earlier
    ``avfmae download`` lists them (archives, extracted since, cannot be checked)."""
    try:
        listing = json.loads((root / "source.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    bad = []
    for entry in listing:
        path = root / str(entry.get("path", ""))
        if not path.is_file() or not (entry.get("md5") or entry.get("sha256")):
            continue
        if not _check(path, entry.get("md5") or "", entry.get("sha256") or "")[0]:
            bad.append(str(entry["path"]))
    return bad


# ----------------------------------------------------------------------------------------------
# Generated
# ----------------------------------------------------------------------------------------------


def _generate(ds: str, params: Params) -> Path:
    """The generator writes atomically itself, keeps a complete folder of the same config as is
    and resumes an interrupted run, so it writes straight to the raw folder."""
    from avfmae.data.synthetic.variants import generate_variant

    out = pipeline.path("download", "raw", params, ds=ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    produced = Path(generate_variant(ds, params.data.synthetic, out))
    if produced.resolve() != out.resolve():
        raise DatasetError(f"the synthetic generator wrote to {produced}, expected {out}")
    return out


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


def download(ds: str, params: Params) -> Path:
    """Make ``{data.root}/raw/{ds}`` complete (see the module docstring); return it."""
    spec = registry.get(ds)
    pipeline.path("download", "raw", params, ds=ds).parent.mkdir(parents=True, exist_ok=True)
    kind = spec.source.kind
    if kind == "generated":
        return _generate(ds, params)
    if kind in ("licensed", "user") or locations.local_copy(ds, params) is not None:
        return _check_placed(ds, spec, params)
    return _fetch_public(ds, spec, params)
