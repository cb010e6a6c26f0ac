"""The ``histdenoise`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` and an ``add_<name>`` that
declares its options; errors derived from `HistdenoiseError` print one line and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from histdenoise import __version__
from histdenoise.errors import HistdenoiseError

EXIT_ERROR = 1


# --------------------------------------------------------------------------- models
def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models and whether they are cached")
    p.add_argument("--registry", type=Path, help="registry file (default: the shipped one)")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    from histdenoise.download import is_cached
    from histdenoise.registry import DEFAULT_MODEL, cache_dir, list_models, load_registry

    registry = load_registry(args.registry)
    for name in list_models(args.registry):
        entry = registry[name]
        state = "shipped" if entry.bundled else ("cached" if is_cached(entry) else "not downloaded")
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}\t{state}\t{entry.licence}\t{entry.description}")
    print(f"cache: {cache_dir()}")
    return 0


# --------------------------------------------------------------------------- download
def add_download(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download, verify and cache a registered model",
        description="Download a registered model into the cache (resuming an interrupted "
        "download), verify it and unpack it. With --file, install an archive you "
        "downloaded yourself.",
    )
    p.add_argument("name", help="model name (see `histdenoise models`)")
    p.add_argument("--file", type=Path, help="install this already downloaded archive instead")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--registry", type=Path, help="registry file (default: the shipped one)")
    p.add_argument("--retries", type=int, default=5, help="retries after transient errors")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout, seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)


def cmd_download(args) -> int:
    from histdenoise.download import DownloadOptions, ensure_model, install_archive
    from histdenoise.registry import get_model

    entry = get_model(args.name, args.registry)
    if entry.bundled:
        print(f"{entry.name} is shipped with histdenoise: {entry.local_path()}")
        return 0
    if args.file:
        folder = install_archive(entry, args.file)
    else:
        options = DownloadOptions(
            retries=args.retries, timeout=args.timeout, progress=not args.quiet
        )
        folder = ensure_model(entry, force=args.force, options=options)
    print(folder)
    return 0


# --------------------------------------------------------------------------- convert
def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint (e.g. the published one) to the native format",
        description="Write SRC (registry name, TF checkpoint, checkpoint.zip or native "
        "folder) as a native histdenoise checkpoint folder DST: model.weights.h5 + model.json.",
    )
    p.add_argument("src", help="registry name, TF checkpoint prefix/folder/zip, or native folder")
    p.add_argument("dst", type=Path, help="output folder")
    p.add_argument("--name", help="model name in the card (default: DST's folder name)")
    p.add_argument("--description", default=None, help="description in the card")
    p.add_argument("--licence", default=None, help="SPDX licence of the weights")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from histdenoise.loading import load_network
    from histdenoise.native import ModelCard, save_native

    if args.dst.exists() and not args.overwrite:
        raise HistdenoiseError(f"{args.dst}: already exists (use --overwrite to replace it)")
    model = load_network(args.src)
    old = model.histdenoise_card
    card = ModelCard(
        name=args.name or args.dst.name,
        config=old.config,
        stft=old.stft,
        description=args.description if args.description is not None else old.description,
        licence=args.licence if args.licence is not None else old.licence,
        source=f"converted from {args.src} (weights sha256 {old.weights_sha256})",
        training=old.training,
        metrics=old.metrics,
    )
    save_native(model, args.dst, card, overwrite=args.overwrite)
    print(f"{args.dst}: {model.count_params():,} parameters, weights sha256 {card.weights_sha256}")
    return 0


# --------------------------------------------------------------------------- info
def add_info(sub) -> None:
    p = sub.add_parser("info", help="show a model's config, parameter count and card")
    p.add_argument("source", help="registry name, checkpoint path or native folder")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    import json

    from histdenoise.loading import load_network

    model = load_network(args.source)
    card = model.histdenoise_card.to_dict()
    card["parameters"] = model.count_params()
    print(json.dumps(card, indent=2))
    return 0


COMMANDS: tuple[Callable, ...] = (add_models, add_download, add_convert, add_info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="histdenoise",
        description="Denoise historical music recordings with the two-stage U-Net "
        "of Moliner & Välimäki (ICASSP 2022).",
    )
    parser.add_argument("--version", action="version", version=f"histdenoise {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HistdenoiseError as exc:
        print(f"histdenoise: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("histdenoise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
