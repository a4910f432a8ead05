"""t-SNE of a checkpoint's features before the projection head (CQ Fig. 2).

Features: the backbone's pooled output (the encoder file holds the backbone only, so these are
the pre-projection features), evaluation transform, through the feature cache of
`eval.core.extraction`. Embedding: scikit-learn's TSNE with perplexity 30 (docs/protocols.md section 3).

Choices where the paper is silent (each a parameter):
- classes: at most 20 (`--max-classes`); by default the first 20 class ids (0..19), or with
  `--class-choice random` a seeded draw of 20 classes without replacement; data sets with
  fewer classes use all of them;
- images: the test split, at most `--per-class` (default 100) images per chosen class, the first
  ones in data set order;
- TSNE settings: 2 components, perplexity 30, init "pca", learning_rate "auto", max_iter 1000,
  metric euclidean on the raw features, random_state = `--seed` (default 0); perplexity must be
  below the number of points (a ConfigError says so otherwise);
- outputs per model, named by `--name` (default: the encoder file's folder name): `<name>.png`
  (a scatter plot, one colour per class from matplotlib's tab10, tab20 above 10 classes;
  legend with class names; Agg backend) and `<name>_tsne.npz` (arrays `coords` (N, 2),
  `labels` (N,), `indices` (N,) into the split, `classes`), both written atomically; plus `metrics.json` listing them with provenance.

CLI (one PNG per model; repeat --encoder for several models on the same images):
    python -m eval.tsne --encoder runs/a/encoder.pt [--encoder runs/b/encoder.pt ...] \
        --dataset cifar100 --root ROOT --out DIR [--split test] [--perplexity 30] [--seed 0]
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from common.checkpoint import atomic_write
from common.config import ArgumentParser, cli_main, positive_int, positive_number
from common.errors import ConfigError
from eval.core.cli import add_data_args, finish
from eval.core.data import DataSpec, parse_options
from eval.core.encoders import resolve_device
from eval.core.extraction import FeatureExtractor, TransformSpec
from eval.core.records import int_labels

MAX_CLASSES = 20  # CQ Fig. 2 / docs/protocols.md: at most 20 classes


def choose_classes(labels: np.ndarray, max_classes: int = MAX_CLASSES, choice: str = "first",
                   seed: int = 0) -> list[int]:
    """The class ids to show: the first `max_classes` present, or a seeded random choice."""
    if not 1 <= int(max_classes) <= MAX_CLASSES:
        raise ConfigError(f"--max-classes {max_classes}: expected 1..{MAX_CLASSES}")
    present = np.unique(labels)
    if choice == "first":
        return [int(c) for c in present[:max_classes]]
    if choice == "random":
        if len(present) <= max_classes:
            return [int(c) for c in present]
        rng = np.random.default_rng(seed)
        return sorted(int(c) for c in rng.choice(present, size=max_classes, replace=False))
    raise ConfigError(f"--class-choice {choice!r}: expected 'first' or 'random'")


def select_points(labels: np.ndarray, classes: Sequence[int], per_class: int) -> np.ndarray:
    """Indices of the first `per_class` images of each chosen class, in data set order."""
    if int(per_class) < 1:
        raise ConfigError(f"--per-class {per_class}: expected a positive integer")
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    return np.sort(keep)


def embed(features: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """(N, 2) sklearn TSNE coordinates (settings in the module docstring)."""
    from sklearn.manifold import TSNE

    if not 0 < perplexity < features.shape[0]:
        raise ConfigError(f"--perplexity {perplexity}: must be positive and below the number of "
                          f"points ({features.shape[0]}); lower it or raise --per-class")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                max_iter=1000, random_state=seed)
    return tsne.fit_transform(np.asarray(features, dtype=np.float32)).astype(np.float64)


def plot_png(coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str, path: Path) -> Path:
    """Scatter plot, one colour per class, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    shown = sorted(set(labels.tolist()))
    cmap = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")  # tab20 pairs similar colours
    for i, c in enumerate(shown):
        mask = labels == c
        ax.scatter(coords[mask, 0], coords[mask, 1], s=6, color=cmap(i % cmap.N), label=class_names[i])
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def save_coords(path: Path, coords, labels, indices, classes) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, coords=coords, labels=labels, indices=indices, classes=np.asarray(classes, dtype=str))
    return atomic_write(path, write)


def run_tsne(extractor: FeatureExtractor, spec: DataSpec, out_dir: str | Path, name: str,
             max_classes: int = MAX_CLASSES, class_choice: str = "first", per_class: int = 100,
             perplexity: float = 30.0, seed: int = 0) -> dict:
    """Embed one model's features and write `<name>.png` and `<name>_tsne.npz` under `out_dir`."""
    dataset = spec.build()
    got = extractor.features(spec, "pooled", dataset=dataset)
    labels = int_labels(got.targets, "tsne").numpy()
    classes = choose_classes(labels, max_classes, class_choice, seed)
    indices = select_points(labels, classes, per_class)
    coords = embed(got.features.numpy()[indices], perplexity, seed)
    all_names = list(getattr(dataset, "classes", []))
    names = [str(all_names[c]) if c < len(all_names) else str(c) for c in classes]
    out_dir = Path(out_dir)
    png = plot_png(coords, labels[indices], names, f"t-SNE: {name}", out_dir / f"{name}.png")
    npz = save_coords(out_dir / f"{name}_tsne.npz", coords, labels[indices], indices, names)
    return {"name": name, "png": str(png), "coords": str(npz), "classes": classes, "class_names": names,
            "num_points": int(len(indices)), "encoder": str(extractor.encoder_path),
            "encoder_sha256": extractor.sha256}


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.tsne", description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", action="append", required=True, help="repeat for several models")
    parser.add_argument("--name", action="append", default=None, help="one per --encoder (default: its folder)")
    add_data_args(parser)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-classes", type=positive_int, default=MAX_CLASSES)
    parser.add_argument("--class-choice", default="first", help="first | random")
    parser.add_argument("--per-class", type=positive_int, default=100)
    parser.add_argument("--perplexity", type=positive_number, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=positive_int, default=None)
    parser.add_argument("--norm", default=None)
    args = parser.parse_args(argv)
    names = args.name or [Path(e).resolve().parent.name for e in args.encoder]
    if len(names) != len(args.encoder) or len(set(names)) != len(names):
        raise ConfigError(f"--name: expected {len(args.encoder)} distinct names, one per --encoder, got {names}")
    device = resolve_device(args.device)
    spec = DataSpec(args.dataset, args.root, args.split, parse_options(args.options), args.limit)
    started, models = time.time(), []
    for encoder, name in zip(args.encoder, names):
        extractor = FeatureExtractor(encoder, args.cache_dir, device, transform=TransformSpec(args.image_size, None, args.norm))
        models.append(run_tsne(extractor, spec, args.out, name, args.max_classes, args.class_choice,
                               args.per_class, args.perplexity, args.seed))
    metrics = {"suite": "tsne", "perplexity": args.perplexity, "seed": args.seed, "models": models,
               "data": spec.record(), "seconds": round(time.time() - started, 3)}
    finish(args, metrics, device, "eval.tsne",
           summary=lambda m: f"t-SNE of {len(models)} model(s): {', '.join(m['png'] for m in models)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
