"""The ``histdenoise`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` and an ``add_<name>`` that
declares its options; errors derived from `HistdenoiseError` print one line and exit 1.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from histdenoise import __version__
from histdenoise.errors import HistdenoiseError

EXIT_ERROR = 1


# --------------------------------------------------------------------------- denoise
def add_denoise(sub) -> None:
    from histdenoise.dehum import DEHUM_MODES
    from histdenoise.denoiser import BACKENDS, PRECISIONS, DenoiseConfig, Denoiser
    from histdenoise.dethump import DETHUMP_MODES
    from histdenoise.engine import ChunkConfig

    defaults = _keyword_defaults(Denoiser)
    p = sub.add_parser(
        "denoise",
        help="denoise recordings: writes <stem>_denoised, <stem>_residual and <stem>_report.json",
        description="Denoise audio files or folders of them. For each input writes "
        "<stem>_denoised.<ext> (the cleaned recording), <stem>_residual.<ext> (exactly what "
        "was removed: denoised + residual == input) and <stem>_report.json, beside the "
        "input or in OUTDIR. The run is planned first: if two inputs would write the same "
        "output, or an output is an input, nothing is written and the exit code is 2. One "
        "failing file does not stop the others; the exit code is 1 if any failed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument(
        "-o",
        "--out-dir",
        type=Path,
        metavar="OUTDIR",
        help="write outputs here (keeping subfolders) instead of beside the inputs",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME|PATH",
        help="registry name or checkpoint path (default: the default model); with "
        "--backend onnxruntime, an exported ONNX folder or .onnx file",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=defaults["backend"],
        help="run the network with TensorFlow, or with ONNX Runtime on an ONNX export "
        "(`histdenoise export`; TensorFlow is then never imported); auto: ONNX Runtime "
        "when the model ships an ONNX graph of its weights (bundled does), onnxruntime is "
        "installed and neither --precision nor --jit is given, else TensorFlow "
        "(default: auto; the report records which ran)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults["precision"],
        help="network arithmetic (tensorflow backend): bfloat16 (faster on CPUs with "
        "AVX512-BF16 or AMX) or float16 (GPUs, CPUs with AVX512-FP16/AMX-FP16) in the first "
        "stage; weights and the second stage stay float32. Where the machine has no "
        "native support it runs float32, which is faster there, and says so "
        "(default: float32)",
    )
    p.add_argument(
        "--jit", action="store_true", help="compile the network with XLA (tensorflow backend)"
    )
    p.add_argument("--recursive", action="store_true", help="descend into subfolders")
    exist = p.add_mutually_exclusive_group()
    exist.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose outputs exist (resume an interrupted batch)",
    )
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--keep-extension",
        action="store_true",
        help="name outputs after the whole input name (a.flac_denoised.flac, "
        "a.flac_report.json), so that a.wav and a.flac in one folder do not clash",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults["batch_size"],
        metavar="N",
        help="chunks (of one channel) per network call; more is faster on a GPU (default: "
        "with ONNX Runtime on the CPU, one per core up to 4, run side by side; else 1)",
    )
    p.add_argument(
        "--chunk-frames",
        type=_chunk_frames,
        default=ChunkConfig().frames,
        metavar="N",
        help="STFT frames per chunk, a multiple of 64 from 128 (960 = 11.1 s); longer chunks "
        "overlap less (faster) but need more memory",
    )
    p.add_argument(
        "--mono", action="store_true", help="downmix to mono first (as the authors' tool did)"
    )
    p.add_argument(
        "--strength",
        type=_unit_float,
        default=DenoiseConfig().strength,
        metavar="S",
        help="0..1: output = input - S * residual",
    )
    p.add_argument(
        "--dehum",
        choices=DEHUM_MODES,
        default=DenoiseConfig().dehum,
        help="mains hum removal before the network: auto looks for steady 50- or 60-Hz hum "
        "(within 0.6 %%) in the first 2 minutes and subtracts its harmonics where found; "
        "50 or 60 looks only there, up to 4 %% off (a disc played off speed), with a lower "
        "bar; off never (default: auto; the report's \"hum\" says what was found)",
    )
    p.add_argument(
        "--dethump",
        choices=DETHUMP_MODES,
        default=DenoiseConfig().dethump,
        help="removal of thumps that come back every turn of a 78 (70-86 rpm) before the "
        "network: auto finds a short low-frequency bump repeating every turn in the first "
        "2 minutes and subtracts it turn by turn; off never (default: auto; the report's "
        "\"thumps\" says what was found)",
    )
    p.add_argument(
        "--format",
        default=None,
        metavar="FMT",
        help="output format: WAV, FLAC, OGG, MP3, AIFF, ... (default: the input's; FLAC or "
        "WAV FLOAT for lossy or companded inputs: MP3, OGG, mu-law, A-law, ADPCM)",
    )
    p.add_argument(
        "--subtype",
        default=None,
        metavar="SUB",
        help="output sample format: PCM_16, PCM_24, FLOAT, ... (default: the input's)",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="files in flight at once, sharing one loaded model, so that one file's "
        "decoding, resampling and writing overlap another's network work (default: 2 "
        "when there are several files and at least 2 CPUs, else 1); each needs the "
        "memory of one file's processing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_denoise)


def _number(text: str, kind: type, meaning: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {meaning}, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text, float, "a number above 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _keyword_defaults(func: Callable) -> dict:
    """The defaults of ``func``'s parameters: the command's defaults are the library's."""
    import inspect

    params = inspect.signature(func).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _positive_int(text: str) -> int:
    value = _number(text, int, "a whole number of at least 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def _whole_number(text: str) -> int:
    return _number(text, int, "a whole number")


def _count(text: str) -> int:
    value = _number(text, int, "a whole number from 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, got {value}")
    return value


def _chunk_frames(text: str) -> int:
    meaning = "a multiple of 64 from 128 (STFT frames)"
    value = _number(text, int, meaning)
    if value < 128 or value % 64:
        raise argparse.ArgumentTypeError(f"expected {meaning}, got {value}")
    return value


def _unit_float(text: str) -> float:
    meaning = "a number from 0 to 1"
    value = _number(text, float, meaning)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected {meaning}, got {text}")
    return value


EXIT_CLASH = 2


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that temporary files are removed; a
    BaseException (like KeyboardInterrupt), so that no ``except Exception`` takes it for
    a failure of the file at hand."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def cmd_denoise(args) -> int:
    import signal

    from histdenoise.denoiser import DenoiseConfig
    from histdenoise.runner import RunSummary, collect, pending, plan_run

    signal.signal(signal.SIGTERM, _on_sigterm)
    jobs, errors = collect(args.paths, recursive=args.recursive)
    for line in errors:
        _error(line)
    settings = DenoiseConfig(
        strength=args.strength, mono=args.mono, format=args.format, subtype=args.subtype,
        dehum=args.dehum, dethump=args.dethump,
    )
    plan = plan_run(jobs, args.out_dir, args.format, args.subtype, args.keep_extension)
    if plan.clashes:
        for line in plan.clashes:
            _error(f"output clash: {line}")
        print(
            f"nothing written: {len(plan.clashes)} output clash"
            f"{'es' if len(plan.clashes) > 1 else ''}",
            file=sys.stderr,
        )
        return EXIT_CLASH
    for line in plan.errors:
        _error(line)
    todo, skipped = pending(plan.files, args.skip_existing)
    summary = RunSummary(errors=errors + plan.errors, skipped=skipped)
    try:
        if todo:
            _run_planned(args, todo, settings, summary)
    except (KeyboardInterrupt, Terminated):
        print(summary.line(" (interrupted)"), file=sys.stderr)
        raise
    print(summary.line(), file=sys.stderr)
    return EXIT_ERROR if summary.errors else 0


def _run_planned(args, todo: list, settings, summary) -> None:
    """Load the model and denoise the planned files ``todo`` into ``summary``, with an
    overall progress bar and one per file in flight."""
    import contextlib
    import time

    from tqdm.auto import tqdm

    from histdenoise.denoiser import SECONDS_BAR, Denoiser
    from histdenoise.engine import ChunkConfig
    from histdenoise.registry import DEFAULT_MODEL
    from histdenoise.runner import run_files

    backend = args.backend
    if backend == "auto":
        from histdenoise.denoiser import resolve_backend

        backend = resolve_backend(args.model, args.precision, args.jit)[0]
    slow_start = backend == "tensorflow"
    if slow_start and not args.quiet:
        print(f"histdenoise: loading {args.model or DEFAULT_MODEL} with TensorFlow...",
              file=sys.stderr, flush=True)
    started = time.perf_counter()
    if slow_start and not getattr(args, "tf_log_explicit", True):
        quiet_tensorflow()
    denoiser = Denoiser(
        args.model,
        batch_size=args.batch_size,
        chunk=ChunkConfig(frames=args.chunk_frames),
        backend=args.backend,
        precision=args.precision,
        jit=args.jit,
    )
    if denoiser.backend == "tensorflow":
        with contextlib.suppress(Exception):  # the first file meets and reports it
            denoiser.warm_up()  # tracing now, so that the bars move at their pace
        if not args.quiet:
            print(f"histdenoise: {denoiser.card.name} ready on TensorFlow in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    total = sum(item.info.duration for item in todo)
    workers = args.jobs or (2 if len(todo) > 1 and (os.cpu_count() or 1) > 1 else 1)
    with tqdm(
        total=round(total, 1),
        unit="s",
        desc="all files",
        disable=args.quiet,
        position=0,
        bar_format=SECONDS_BAR,
    ) as overall:

        @contextlib.contextmanager
        def file_progress(item, slot: int):
            with tqdm(
                total=round(item.info.duration, 1),
                unit="s",
                desc=item.job.path.name[:30],
                disable=args.quiet,
                position=slot,
                leave=False,
                bar_format=SECONDS_BAR,
            ) as bar:
                yield lambda sec, _total: bar.update(round(sec - bar.n, 1))
            overall.update(round(item.info.duration, 1))

        run_files(
            denoiser,
            todo,
            settings,
            summary,
            # replaces the incomplete leftovers of an interrupted run
            overwrite=args.overwrite or args.skip_existing,
            workers=workers,
            file_progress=file_progress,
            on_warning=lambda line: tqdm.write(f"histdenoise: warning: {line}", file=sys.stderr),
            on_error=lambda line: tqdm.write(f"histdenoise: error: {line}", file=sys.stderr),
        )


_TF_NOISE = (
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


def quiet_tensorflow() -> None:
    """Import TensorFlow without its start-up logging on stderr (absl, oneDNN, CUDA
    probing), unless the user set ``TF_CPP_MIN_LOG_LEVEL``: those lines come from C++
    before any setting applies, so stderr is caught while TensorFlow starts and only what
    is not TensorFlow's own logging is passed on."""
    import re
    import tempfile

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except ImportError:
            pass  # the backend says what is missing
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        noise = re.compile(_TF_NOISE)
        for line in log.read().decode("utf-8", "replace").splitlines():
            if line.strip() and not noise.match(line):
                print(line, file=sys.stderr)


def _error(message: str) -> None:
    print(f"histdenoise: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- build-corpus
def add_build_corpus(sub) -> None:
    from histdenoise.training.corpus import MAX_SECONDS
    p = sub.add_parser(
        "build-corpus",
        help="render an offline corpus of clean classical music (music21 + FluidSynth)",
        description="Render scores from the music21 corpus with FluidSynth and Debian's GM "
        "soundfonts (humanised), plus the Wesnoth orchestral recordings, into OUT as "
        "<split>/<category>/<piece>.flac and corpus.csv. Resumes an interrupted build.",
    )
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument(
        "--per-category",
        type=_positive_int,
        default=40,
        metavar="N",
        help="score renderings per category (piano, strings, choir, ensemble)",
    )
    p.add_argument(
        "--no-orchestra", action="store_true", help="leave out the Wesnoth orchestral recordings"
    )
    p.add_argument(
        "--seed", type=_whole_number, default=0, help="seed of piece choice and humanisation"
    )
    p.add_argument("--workers", type=_positive_int, default=2, help="parallel renderers")
    p.add_argument(
        "--max-seconds",
        type=_positive_float,
        default=MAX_SECONDS,
        metavar="S",
        help=f"keep at most the first S seconds of each piece (default {MAX_SECONDS:g})",
    )
    p.add_argument(
        "--spread-splits",
        action="store_true",
        help="deal the scores to train, validation, train, test in turn so that a small "
        "corpus has every split (default: split by a hash of the score's name)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build_corpus)


def cmd_build_corpus(args) -> int:
    from histdenoise.training.render import CorpusConfig, build_corpus

    config = CorpusConfig(
        per_category=args.per_category,
        orchestra=not args.no_orchestra,
        seed=args.seed,
        workers=args.workers,
        max_seconds=args.max_seconds,
        spread_splits=args.spread_splits,
    )
    rows = build_corpus(args.out, config, progress=not args.quiet)
    hours = sum(float(r["seconds"]) for r in rows) / 3600
    print(f"{args.out}: {len(rows)} pieces, {hours:.2f} h")
    return 0


# --------------------------------------------------------------------------- train
def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a JSON config (resumes an interrupted run)",
        description="Train the two-stage U-Net as set out in CONFIG (JSON: the fields of "
        "histdenoise.training.TrainConfig). Checkpoints, TensorBoard logs and history.csv go "
        "to the run folder; a finished run is exported as a native model in <run>/model.",
    )
    p.add_argument("config", type=Path, help="training config (JSON)")
    p.add_argument("--run-dir", type=Path, help="override the config's run folder")
    p.add_argument("--steps", type=_positive_int, help="override the total steps")
    p.add_argument("--max-minutes", type=_positive_float, help="stop (resumably) after this long")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from histdenoise.training import TrainConfig, train

    config = TrainConfig.from_json(args.config)
    if args.run_dir:
        config.run_dir = str(args.run_dir)
    if args.steps:
        config.steps = args.steps
    if args.max_minutes is not None:
        config.max_minutes = args.max_minutes
    result, model = train(config, progress=not args.quiet)
    print(json.dumps(result))
    print(f"model: {model}" if model else "stopped before the last step; run again to resume")
    return 0


# --------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    from histdenoise.dehum import DEHUM_MODES
    from histdenoise.denoiser import DenoiseConfig
    from histdenoise.dethump import DETHUMP_MODES

    p = sub.add_parser(
        "evaluate",
        help="score a model and baselines on a test set (table + plots)",
        description="Denoise every example of TESTSET (a folder with testset.csv, or a corpus "
        "folder, whose test split is then made into one) with MODEL and the baselines "
        "(untouched input, noisereduce at its best settings for the set). Prints a table of "
        "SI-SDR and SNR improvement per input SNR; writes results.csv, summary.json, "
        "table.md and si_sdr.png to OUT.",
    )
    p.add_argument("model", help="registry name or checkpoint path")
    p.add_argument("testset", type=Path, help="test set folder, or corpus folder")
    p.add_argument("-o", "--out", type=Path, default=Path("evaluation"), help="results folder")
    p.add_argument("--suite", choices=sorted(SUITE_NAMES), default=None,
                   help="with a corpus folder: which test set to make (default test: its test "
                   "split under the training noise; types: each disturbance alone at 6 dB; "
                   "harm: clean and acoustic-era music; heldout: the orchestral recordings "
                   "under held-out noise settings); with a test set folder: which suite it "
                   "is, the name of its card metrics (needed with --update-card)")
    p.add_argument("--no-baselines", action="store_true", help="skip noisereduce")
    p.add_argument("--dehum", choices=DEHUM_MODES, default=DenoiseConfig().dehum,
                   help="the denoiser's hum removal, as in `denoise` (off: the network alone)")
    p.add_argument("--dethump", choices=DETHUMP_MODES, default=DenoiseConfig().dethump,
                   help="the denoiser's thump removal, as in `denoise` (off: the network alone)")
    p.add_argument("--update-card", action="store_true",
                   help="write the summary into the model card's metrics (a native model "
                   "folder) as <suite>_<condition>_<snr>dB_<category> entries")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)


SUITE_NAMES = ("test", "types", "harm", "heldout")


def cmd_evaluate(args) -> int:
    from histdenoise.training.evaluate import (
        evaluate,
        format_levels,
        format_table,
        save_results,
        summarise,
        update_card,
    )
    from histdenoise.training.testsets import SUITES, build_testset

    testset, suite = args.testset, args.suite
    if not (testset / "testset.csv").is_file() and (testset / "corpus.csv").is_file():
        suite = suite or "test"
        build_testset([str(testset)], args.out / "testset", SUITES[suite])
        testset = args.out / "testset"
    elif args.update_card and suite is None:
        raise HistdenoiseError(
            f"{testset}: a built test set does not say which suite it is; name it with "
            f"--suite ({', '.join(SUITE_NAMES)}) so that --update-card files its metrics "
            "under that name")
    rows, info = evaluate(
        args.model, testset, baselines=not args.no_baselines, progress=not args.quiet,
        dehum=args.dehum, dethump=args.dethump,
    )
    paths = save_results(rows, info, args.out)
    summary = summarise(rows)
    for condition in dict.fromkeys(s["condition"] for s in summary):
        if not condition.startswith("clean"):
            print(f"{condition}:\n{format_table(summary, 'all', condition)}")
    print(format_levels(summary))
    if args.update_card:
        card = update_card(args.model, summary, suite, info)
        print(f"metrics written to {card}")
    print(f"results: {paths['table']}, {paths['plot']}")
    return 0


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
    from histdenoise.download import DownloadConfig

    p = sub.add_parser(
        "download",
        help="download, verify and cache a registered model",
        description="Download a registered model into the cache (resuming an interrupted "
        "download), verify it and unpack it. With --file, install an archive you "
        "downloaded yourself.",
    )
    p.add_argument("name", help="model name (see `histdenoise models`)")
    p.add_argument("--file", type=Path, help="install this already downloaded archive instead")
    p.add_argument(
        "--force",
        action="store_true",
        help="download again even if cached, and accept an archive that differs from the "
        "one pinned on first use",
    )
    p.add_argument("--registry", type=Path, help="registry file (default: the shipped one)")
    p.add_argument("--retries", type=_count, default=DownloadConfig().retries,
                   help="retries after transient errors")
    p.add_argument("--timeout", type=_positive_float, default=DownloadConfig().timeout,
                   help="network timeout, seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)


def cmd_download(args) -> int:
    from histdenoise.download import DownloadConfig, ensure_model, install_archive
    from histdenoise.registry import get_model

    entry = get_model(args.name, args.registry)
    if entry.bundled:
        print(f"{entry.name} is shipped with histdenoise: {entry.local_path()}")
        return 0
    if args.file:
        folder = install_archive(entry, args.file, force=args.force)
    else:
        options = DownloadConfig(
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
    from histdenoise.card import ModelCard
    from histdenoise.model.loading import load_model
    from histdenoise.model.native import save_native

    if args.dst.exists() and not args.overwrite:
        raise HistdenoiseError(f"{args.dst}: already exists (use --overwrite to replace it)")
    model, old = load_model(args.src)
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


# --------------------------------------------------------------------------- export
def add_export(sub) -> None:
    from histdenoise.model.export import FORMATS, export_model

    p = sub.add_parser(
        "export",
        help="export a model for other runtimes: ONNX or TF SavedModel, with its card",
        description="Export MODEL (registry name, checkpoint path or native folder) for "
        "inference: spectrogram (batch, frames, 1025, 2) in, denoised spectrogram out, batch "
        "and frames dynamic. OUT is a folder: onnx gives OUT/model.onnx (card in its "
        "metadata) + OUT/model.json; savedmodel gives a SavedModel folder (signature "
        "serving_default) + OUT/model.json. The export is checked against TensorFlow and "
        "written atomically.",
    )
    p.add_argument("model", help="registry name, checkpoint path or native folder")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=_keyword_defaults(export_model)["format"],
        help="onnx (run it with --backend onnxruntime) or savedmodel (default: onnx)",
    )
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from histdenoise.model.export import export_model, read_export

    out = export_model(args.model, args.out, format=args.format, overwrite=args.overwrite)
    record = read_export(out)["export"]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(
        f"{out}: {args.format} export of {args.model}, {len(files)} files, "
        f"{size / 1e6:.1f} MB, {record['seconds']:.1f} s"
    )
    for path in files:
        if path.parent == out:
            print(f"  {path.name}\t{path.stat().st_size:,} bytes")
    if record.get("max_error") is not None:
        frames = ", ".join(str(f) for f in record["checked_frames"])
        print(
            f"checked against TensorFlow (batch {record['checked_batch']}, {frames} frames): "
            f"max difference {record['max_error']:.1e} of max |output|"
        )
    return 0


# --------------------------------------------------------------------------- info
def add_info(sub) -> None:
    p = sub.add_parser("info", help="show a model's config, parameter count and card")
    p.add_argument("source", help="registry name, checkpoint path or native folder")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    import json

    from histdenoise.model.loading import load_model

    model, card = load_model(args.source)
    card = card.to_dict()
    card["parameters"] = model.count_params()
    print(json.dumps(card, indent=2))
    return 0


COMMANDS: tuple[Callable, ...] = (
    add_denoise,
    add_download,
    add_models,
    add_convert,
    add_export,
    add_info,
    add_build_corpus,
    add_train,
    add_evaluate,
)


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


TENSORFLOW_COMMANDS = ("convert", "export", "info", "build-corpus", "train", "evaluate")
"""Subcommands that always load TensorFlow (denoise does with its tensorflow backend)."""


def main(argv: Sequence[str] | None = None) -> int:
    explicit = "TF_CPP_MIN_LOG_LEVEL" in os.environ  # the user's wish is kept
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    args.tf_log_explicit = explicit
    try:
        if args.command in TENSORFLOW_COMMANDS and not explicit:
            quiet_tensorflow()
        return args.func(args)
    except HistdenoiseError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("histdenoise: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("histdenoise: terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
