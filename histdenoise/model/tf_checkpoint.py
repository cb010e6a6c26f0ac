"""Read the authors' TensorFlow checkpoints (object-based, ``tf.train.Checkpoint`` format).

Variables are read by key with ``tf.train.load_checkpoint``: the reference code is not
needed, and a ``_CHECKPOINTABLE_OBJECT_GRAPH`` entry is optional. The network config
(depth, dense-block layers, channels) is inferred from the keys and shapes
(`histdenoise.model.network.infer_config`).

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from histdenoise.errors import CheckpointError, first_line
from histdenoise.model.network import (
    NetworkConfig,
    build_network,
    checkpoint_variables,
    expected_shapes,
    infer_config,
)

KEY_PREFIX = "layer_with_weights-0/"
KEY_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def find_prefix(path: str | Path) -> Path | None:
    """The checkpoint prefix for a prefix, an ``.index`` file or a directory holding one.

    A directory is searched for a ``checkpoint`` state file first, then for a single
    ``*.index`` file. Returns None when ``path`` is none of these.
    """
    path = Path(path)
    if path.suffix == ".index" and path.is_file():
        return path.with_suffix("")
    if Path(f"{path}.index").is_file():
        return path
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            m = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(), re.M)
            if m:
                cand = Path(m.group(1))
                cand = cand if cand.is_absolute() else path / cand.name
                if Path(f"{cand}.index").is_file():
                    return cand
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
    return None


def read_weights(prefix: str | Path) -> dict[str, np.ndarray]:
    """Layer weights of a reference checkpoint: path (``conv2d_1/kernel``) -> array."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as exc:
        first = first_line(exc)
        raise CheckpointError(f"{prefix}: not a readable TensorFlow checkpoint ({first})") from exc
    out = {}
    for key in reader.get_variable_to_shape_map():
        if key.startswith(KEY_PREFIX) and key.endswith(KEY_SUFFIX):
            out[key[len(KEY_PREFIX) : -len(KEY_SUFFIX)]] = reader.get_tensor(key)
    if not out:
        raise CheckpointError(
            f"{prefix}: no network variables (keys starting with {KEY_PREFIX!r}) in checkpoint"
        )
    return out


def check_weights(
    weights: dict[str, np.ndarray], config: NetworkConfig, source: str | Path = ""
) -> None:
    """Raise `CheckpointError` listing missing, unexpected and mis-shaped variables."""
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(weights[k].shape)} != {expected[k]}"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != expected[k]
    )
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
    ):
        if items:
            shown = ", ".join(items[:5]) + (
                f", ... ({len(items)} in all)" if len(items) > 5 else ""
            )
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(
            f"{source}: checkpoint does not match the network; " + "; ".join(problems)
        )


def load_tf_checkpoint(prefix: str | Path, config: NetworkConfig | None = None) -> keras.Model:
    """Build the network and load a reference TF checkpoint into it.

    Args:
        prefix: checkpoint prefix (``.../checkpoint`` for ``checkpoint.index``).
        config: expected network shape; inferred from the checkpoint when omitted.
    """
    weights = read_weights(prefix)
    config = config or infer_config(weights, prefix)
    check_weights(weights, config, prefix)
    model = build_network(config)
    for key, var in checkpoint_variables(model).items():
        var.assign(weights[key])
    return model


def save_tf_checkpoint(model: keras.Model, prefix: str | Path) -> Path:
    """Write ``model``'s weights with the reference keys (for tests and interchange).

    The result has no object graph; `load_tf_checkpoint` reads it like the published one.
    """
    import tensorflow as tf

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{KEY_PREFIX}{k}{KEY_SUFFIX}": tf.convert_to_tensor(np.asarray(v))
        for k, v in checkpoint_variables(model).items()
    }
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tensors[n] for n in names],
    )
    (prefix.parent / "checkpoint").write_text(
        f'model_checkpoint_path: "{prefix.name}"\nall_model_checkpoint_paths: "{prefix.name}"\n'
    )
    return prefix
