"""Downloads from a real HTTP server on 127.0.0.1: clean, truncated, corrupted, resumed, cached."""

from __future__ import annotations

import hashlib
import json

import pytest

from histdenoise.download import (
    DownloadOptions,
    archive_path,
    ensure_model,
    install_archive,
    model_dir,
)
from histdenoise.errors import DownloadError
from histdenoise.registry import ModelEntry, Source

FAST = DownloadOptions(retries=2, timeout=5.0, backoff=0.01, progress=False)
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
