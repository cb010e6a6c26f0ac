"""Downloads from a real HTTP server on 127.0.0.1: clean, truncated, corrupted, resumed, cached."""

from __future__ import annotations

import hashlib
import json

import pytest

from histdenoise.download import (
    DownloadConfig,
    archive_path,
    ensure_model,
    install_archive,
    model_dir,
)
from histdenoise.errors import DownloadError
from histdenoise.registry import ModelEntry, Source

FAST = DownloadConfig(retries=2, timeout=5.0, backoff=0.01, progress=False)
FILES = ("checkpoint.index", "checkpoint.data-00000-of-00001")


def entry_for(server, path="/v0.0/checkpoint.zip", **kw) -> ModelEntry:
    return ModelEntry(
        name="small",
        filename="checkpoint.zip",
        sources=(Source("http", server.url(path)),),
        files=FILES,
        **kw,
    )


def test_clean_download_unpacks_and_marks_complete(server, small_zip_bytes, isolated_cache):
    server.files["/v0.0/checkpoint.zip"] = small_zip_bytes
    entry = entry_for(
        server, sha256=hashlib.sha256(small_zip_bytes).hexdigest(), size=len(small_zip_bytes)
    )
    folder = ensure_model(entry, options=FAST)
    assert folder == model_dir(entry, isolated_cache)
    assert {p.name for p in folder.iterdir()} >= set(FILES) | {"download.json"}
    mark = json.loads((folder / "download.json").read_text())
    assert mark["archive_sha256"] == entry.sha256
    assert archive_path(entry).read_bytes() == small_zip_bytes
    assert not list(archive_path(entry).parent.glob("*.part"))


def test_cache_hit_makes_no_request(server, small_zip_bytes):
    server.files["/v0.0/checkpoint.zip"] = small_zip_bytes
    entry = entry_for(server)
    first = ensure_model(entry, options=FAST)
    n = len(server.requests)
    assert ensure_model(entry, options=FAST) == first
    assert len(server.requests) == n == 1


def test_truncated_download_resumes_where_it_stopped(server, small_zip_bytes):
    path = "/v0.0/checkpoint.zip"
    server.files[path] = small_zip_bytes
    from tests.httpserver import Behaviour

    server.behaviour[path] = Behaviour(truncate=1, truncate_at=0.4)
    folder = ensure_model(entry_for(server), options=FAST)
    assert (folder / "checkpoint.index").is_file()
    assert server.requests[0][1] is None
    cut = int(len(small_zip_bytes) * 0.4)
    resumed_at = int(server.requests[1][1].removeprefix("bytes=").rstrip("-"))
    # resumes from the bytes written (whole 64 KiB reads), not from zero
    assert cut - 65536 <= resumed_at <= cut and resumed_at > 0


def test_always_truncated_fails_clearly_and_keeps_part_for_resume(server, small_zip_bytes):
    from tests.httpserver import Behaviour

    path = "/v0.0/checkpoint.zip"
    server.files[path] = small_zip_bytes
    server.behaviour[path] = Behaviour(truncate=100, truncate_at=0.0)
    entry = entry_for(server)
    with pytest.raises(DownloadError) as err:
        ensure_model(entry, options=FAST)
    msg = str(err.value)
    assert server.url(path) in msg and "\n" not in msg
    assert "histdenoise download small --file PATH" in msg
    assert str(archive_path(entry)) in msg
    assert not archive_path(entry).exists()
    assert not model_dir(entry).exists()


def test_interrupted_download_resumes_in_a_later_run(server, small_zip_bytes):
    path = "/v0.0/checkpoint.zip"
    server.files[path] = small_zip_bytes
    entry = entry_for(server)
    part = archive_path(entry).with_name("checkpoint.zip.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(small_zip_bytes[:1000])  # left by an earlier, killed run
    ensure_model(entry, options=FAST)
    assert server.requests == [(path, "bytes=1000-")]
    assert archive_path(entry).read_bytes() == small_zip_bytes


def test_corrupted_archive_is_rejected_and_nothing_cached(server, small_zip_bytes):
    bad = bytearray(small_zip_bytes)
    bad[len(bad) // 3] ^= 0xFF
    server.files["/v0.0/checkpoint.zip"] = bytes(bad)
    entry = entry_for(server)
    with pytest.raises(DownloadError, match="verification failed"):
        ensure_model(entry, options=FAST)
    assert not archive_path(entry).exists()
    assert not archive_path(entry).with_name("checkpoint.zip.part").exists()
    assert not model_dir(entry).exists()


def test_sha256_mismatch_is_rejected(server, small_zip_bytes):
    server.files["/v0.0/checkpoint.zip"] = small_zip_bytes
    entry = entry_for(server, sha256="0" * 64)
    with pytest.raises(DownloadError, match=r"sha256 .* != expected 0000"):
        ensure_model(entry, options=FAST)
    assert not model_dir(entry).exists()


def test_archive_without_expected_files_is_rejected(server):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "no weights here")
    server.files["/v0.0/checkpoint.zip"] = buf.getvalue()
    with pytest.raises(DownloadError, match=r"archive lacks checkpoint\.index"):
        ensure_model(entry_for(server), options=FAST)


def test_transient_errors_are_retried_and_mirrors_tried(server, small_zip_bytes):
    from tests.httpserver import Behaviour

    server.files["/mirror/checkpoint.zip"] = small_zip_bytes
    server.behaviour["/mirror/checkpoint.zip"] = Behaviour(fail_503=2)
    entry = ModelEntry(
        name="small",
        filename="checkpoint.zip",
        files=FILES,
        sources=(
            Source("http", server.url("/gone/checkpoint.zip")),
            Source("http", server.url("/mirror/checkpoint.zip")),
        ),
    )
    folder = ensure_model(entry, options=FAST)
    assert (folder / "checkpoint.index").is_file()
    paths = [p for p, _ in server.requests]
    assert paths == ["/gone/checkpoint.zip"] + ["/mirror/checkpoint.zip"] * 3


def test_no_network_names_the_url_and_the_manual_way(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/checkpoint.zip"
    entry = ModelEntry(
        name="small", filename="checkpoint.zip", files=FILES, sources=(Source("http", url),)
    )
    with pytest.raises(DownloadError) as err:
        ensure_model(entry, options=FAST)
    assert url in str(err.value) and "--file PATH" in str(err.value)


def test_manual_file_install_and_placed_archive(server, small_zip_bytes, tmp_path):
    manual = tmp_path / "my download.zip"
    manual.write_bytes(small_zip_bytes)
    entry = entry_for(server)
    folder = install_archive(entry, manual)
    assert (folder / "checkpoint.data-00000-of-00001").is_file()
    # an archive put at archive_path by hand is used without any request
    other = ModelEntry(
        name="other",
        filename="checkpoint.zip",
        files=FILES,
        sources=(Source("http", server.url("/nothing")),),
    )
    archive_path(other).parent.mkdir(parents=True)
    archive_path(other).write_bytes(small_zip_bytes)
    ensure_model(other, options=FAST)
    assert server.requests == []


# --------------------------------------------------------------------------- pinning
def _other_zip(small_zip_bytes) -> bytes:
    """A valid archive with the expected files, but not the same bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(small_zip_bytes)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
        dst.writestr("trained_model/NOTE", "tampered")
    return buf.getvalue()


def test_unhashed_archive_is_pinned_on_first_use(server, small_zip_bytes, capsys):
    from histdenoise.download import pin_path

    path = "/v0.0/checkpoint.zip"
    server.files[path] = small_zip_bytes
    entry = entry_for(server)  # no sha256, no size: like moliner2022 in the registry
    ensure_model(entry, options=FAST)
    pin = json.loads(pin_path(entry).read_text())
    digest = hashlib.sha256(small_zip_bytes).hexdigest()
    assert pin["sha256"] == digest and pin["size"] == len(small_zip_bytes)
    err = capsys.readouterr().err
    assert f"pinned on first use: sha256 {digest}, {len(small_zip_bytes)} bytes" in err
    # the release changes (or a mirror is poisoned): refused, the installed model kept
    server.files[path] = _other_zip(small_zip_bytes)
    before = (model_dir(entry) / "download.json").read_text()
    with pytest.raises(DownloadError, match="not the archive pinned on first use") as e:
        _redownload(entry)
    assert "--force" in str(e.value) and "\n" not in str(e.value)
    assert (model_dir(entry) / "download.json").read_text() == before
    assert archive_path(entry).read_bytes() == small_zip_bytes
    # --force accepts it and pins the new one
    ensure_model(entry, force=True, options=FAST)
    new = hashlib.sha256(server.files[path]).hexdigest()
    assert json.loads(pin_path(entry).read_text())["sha256"] == new
    assert json.loads((model_dir(entry) / "download.json").read_text())["archive_sha256"] == new


def _redownload(entry):
    """A later download of an entry whose cached archive is gone (a fresh machine that
    kept its pins, or the cache cleaned): fetched again and compared with the pin."""
    from histdenoise.download import download_archive

    archive_path(entry).rename(archive_path(entry).with_name("kept.zip"))
    try:
        return download_archive(entry, options=FAST)
    finally:
        archive_path(entry).with_name("kept.zip").rename(archive_path(entry))


def test_pinned_archive_refuses_a_different_manual_file(server, small_zip_bytes, tmp_path):
    server.files["/v0.0/checkpoint.zip"] = small_zip_bytes
    entry = entry_for(server)
    ensure_model(entry, options=FAST)
    other = tmp_path / "other.zip"
    other.write_bytes(_other_zip(small_zip_bytes))
    with pytest.raises(DownloadError, match="pinned on first use"):
        install_archive(entry, other)
    install_archive(entry, other, force=True)


def test_download_command_prints_the_pin_and_refuses_a_change(
    server, small_zip_bytes, tmp_path, capsys
):
    from histdenoise.cli import main

    server.files["/v0.0/checkpoint.zip"] = small_zip_bytes
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": {"small": {
        "filename": "checkpoint.zip", "files": list(FILES),
        "urls": [{"url": server.url("/v0.0/checkpoint.zip")}]}}}))
    args = ["download", "small", "--registry", str(registry), "--quiet", "--retries", "0"]
    assert main(args) == 0
    digest = hashlib.sha256(small_zip_bytes).hexdigest()
    assert f"pinned on first use: sha256 {digest}" in capsys.readouterr().err
    other = tmp_path / "other.zip"
    other.write_bytes(_other_zip(small_zip_bytes))
    assert main([*args, "--file", str(other)]) == 1
    err = capsys.readouterr().err
    assert "not the archive pinned on first use" in err and err.count("\n") == 1
    assert main([*args, "--file", str(other), "--force"]) == 0
