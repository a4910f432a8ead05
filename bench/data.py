"""Benchmark: the image-folder input pipelines, ours against the reference way, on ImageNet-sized JPEGs.

On a generated folder of JPEGs at ImageNet-like sizes (500 x 375, smooth random content; made
once under --work), interleaved round by round with the same number of loader workers:

    ours, SSL        the project's SimCLR input as the engine runs it on a CPU (`crops: full`, the
                     default): each file decoded once in the loader workers (PIL, JPEG draft mode)
                     and cut into both views' random resized crops + flips (common/data/crops.py),
                     the rest of both SimCLR views (colour, grayscale, blur, normalize) run by the
                     batched view pipeline (common/views.py) on each batch in the same workers (on
                     a GPU the device runs them)
    ours, SSL, sq.   the labelled `crops: square` option: items decoded to the 256 px centre square
                     in the workers, both whole views drawn from it in the training process
    reference, SSL   torchvision's `ImageFolder` with the SimCLR transform (RandomResizedCrop 224,
                     flip, colour jitter 0.8, grayscale 0.2, blur 0.5, normalize) applied twice per
                     image in the loader workers, as the SimCLR / MoCo reference pipelines do
    ours, eval       the evaluation feature extraction (`eval.core.extraction.extract_features`, resize
                     256 + centre crop 224) with the workers, against
    ours, eval, 0    the same in the main process (what the suites did before they took --workers)

Also the loader alone as the engine builds it for a CUDA run (bench/feed.py: the workers decode
and crop both views, the device would finish them; no step, steady state after the workers' first
round), with 1 worker and with --workers: images/s and images/s per worker, the number a GPU
check's feed is sized by (the CPU model is printed beside it); for both `decode` paths of a
folder (cpu: the workers decode and crop; gpu: they only read the bytes and draw the boxes), and
where CUDA is present the GPU path with the device's decoding and cutting included.

Images/s over one pass of the folder per round (median of the rounds); each target is the median
over rounds of the ratio within a round, whose two pipelines run back to back (a load that changes
between rounds cancels out). The evaluation runs feed a global-average-pool "network" so that the
input side is what is timed. Also, per file, the JPEG
decoders a loader worker could use: PIL in full, PIL in draft mode (what `crops: full` does when
every crop allows it) and `torchvision.io.decode_jpeg` on the CPU (ms per image, median).

Targets (2-core CPU, 2 workers): ours >= 1.0x the reference (SSL); extraction with workers >= 1.0x
the main-process one.

    python bench/data.py [--images 2000] [--workers 2] [--rounds 3] [--batch 64] [--work DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import transforms as T  # noqa: E402

from bench.feed import loader_alone  # noqa: E402
from bench.jpegs import write_folder  # noqa: E402
from common.provenance import cpu_model  # noqa: E402
from common.data import build_dataset  # noqa: E402
from common.data.crops import collate_fn, training_source  # noqa: E402
from common.sampler import ResumableSampler  # noqa: E402
from common.views import build_views  # noqa: E402
from eval.core.extraction import TransformSpec, extract_features  # noqa: E402


def make_folder(root: Path, count: int, classes: int = 10) -> Path:
    """`count` JPEGs of 500 x 375 (rounded down to whole classes) under root/train/<class>/
    (bench/jpegs.py; a second run reuses them)."""
    return write_folder(root, {"train": count // classes}, 375, 500, classes)


class TwoCrops:
    def __init__(self, transform):
        self.transform = transform

    def __call__(self, img):
        return self.transform(img), self.transform(img)


def reference_transform(size: int = 224):
    """SimCLR's ImageNet augmentation as torchvision transforms (SimCLR paper, App. A)."""
    jitter = T.ColorJitter(0.8, 0.8, 0.8, 0.2)
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.RandomApply([jitter], p=0.8),
                      T.RandomGrayscale(p=0.2), T.RandomApply([T.GaussianBlur(23, (0.1, 2.0))], p=0.5),
                      T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def seconds_ours(root: Path, workers: int, batch: int, crops: str = "full") -> tuple[float, int]:
    views = build_views("simclr", 224, strength=1.0, blur=True, norm="imagenet")
    data = training_source(build_dataset("imagefolder", str(root), "train", load_size=256, crops=crops),
                           list(views), seed=0, finish_views=workers > 0)  # as the engine on a CPU
    sampler = ResumableSampler(len(data), batch, seed=0, keyed=crops == "full")
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate_fn(data))
    start, n = time.perf_counter(), 0
    for images, _ in loader:
        for slot, view in enumerate(views):  # both views of the batch
            view(images, g, slot=slot)
        n += images.shape[0]
    return time.perf_counter() - start, n


def seconds_reference(root: Path, workers: int, batch: int) -> tuple[float, int]:
    data = torchvision.datasets.ImageFolder(str(root / "train"), transform=TwoCrops(reference_transform()))
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, drop_last=False)
    start, n = time.perf_counter(), 0
    for (v1, v2), _ in loader:
        n += v1.shape[0]
    return time.perf_counter() - start, n


def seconds_extract(root: Path, workers: int, batch: int) -> tuple[float, int]:
    data = build_dataset("imagefolder", str(root), "train", load_size=256)
    pool = torch.nn.AdaptiveAvgPool2d(1)
    spec = TransformSpec.build({"image_size": 224, "resize": None, "norm": "imagenet"})
    start = time.perf_counter()
    features, _ = extract_features(torch.nn.Sequential(pool, torch.nn.Flatten()), data, spec, batch, "cpu", workers)
    return time.perf_counter() - start, features.shape[0]


def decode_ms(root: Path, count: int = 200) -> dict[str, float]:
    """Median ms to decode one file to RGB: PIL in full, PIL in draft mode (shorter side >= 256),
    torchvision.io.decode_jpeg (CPU, from the bytes read beforehand)."""
    from PIL import Image

    files = sorted((root / "train").rglob("*.jpg"))[:count]
    blobs = [torchvision.io.read_file(str(f)) for f in files]

    def pil(path, draft):
        with Image.open(path) as img:
            if draft:
                img.draft("RGB", (img.width * 256 // min(img.size), img.height * 256 // min(img.size)))
            return img.convert("RGB")

    decoders = {"PIL": lambda i: pil(files[i], False), "PIL, draft >= 256 px": lambda i: pil(files[i], True),
                "torchvision.io.decode_jpeg": lambda i: torchvision.io.decode_jpeg(blobs[i])}
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for i in range(len(files)):
        for name, decode in decoders.items():
            start = time.perf_counter()
            decode(i)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def feed_alone(root: Path, workers: int, batch: int, decode: str = "cpu", device: str = "cpu"):
    """The engine's loader of a CUDA SimCLR run on this folder, no step (bench/feed.py): `decode`
    cpu, the workers decode and crop; gpu, they read bytes and draw boxes, and on a CUDA `device`
    the batch is decoded and cut there too."""
    views = build_views("simclr", 224, strength=1.0, blur=True, norm="imagenet")
    data = build_dataset("imagefolder", str(root), "train", load_size=256, decode=decode)
    return loader_alone(data, list(views), batch, workers, device, finish_views=False, on_device=device == "cuda")


def round_ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """ours / theirs within each round (the two ran back to back)."""
    return [a / b for a, b in zip(ours, theirs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--work", default=None, help="folder for the generated JPEGs (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(args.work or tmp), args.images)
        runs = {"ours, SSL": lambda: seconds_ours(root, args.workers, args.batch),  # the compared pairs adjacent
                "reference, SSL": lambda: seconds_reference(root, args.workers, args.batch),
                "ours, SSL, sq.": lambda: seconds_ours(root, args.workers, args.batch, "square"),
                "ours, eval": lambda: seconds_extract(root, args.workers, args.batch),
                "ours, eval, 0": lambda: seconds_extract(root, 0, args.batch)}
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                seconds, n = run()
                rates[name].append(n / seconds)
        decoders = decode_ms(root)
        feeds = {(decode, w): [feed_alone(root, w, args.batch, decode) for _ in range(args.rounds)]
                 for decode in ("cpu", "gpu") for w in sorted({1, args.workers})}
        if torch.cuda.is_available():  # the GPU path as a run has it: workers, then the device
            feeds[("gpu, on CUDA", args.workers)] = [feed_alone(root, args.workers, args.batch, "gpu", "cuda")
                                                     for _ in range(args.rounds)]
    median = {name: statistics.median(v) for name, v in rates.items()}
    print(f"{args.images} JPEGs of 500 x 375, {args.workers} loader workers, batch {args.batch}, "
          f"{args.rounds} rounds, torch {torch.__version__} on {os.cpu_count()} CPU cores")
    print(f"{'pipeline':<16} {'images/s (median)':>18} {'rounds':>30}")
    for name, value in median.items():
        print(f"{name:<16} {value:>18.1f} {' '.join(f'{r:.1f}' for r in rates[name]):>30}")
    print(f"{'decoder (one 500 x 375 JPEG)':<30} {'ms (median)':>12}")
    for name, value in decoders.items():
        print(f"{name:<30} {value:>12.2f}")
    print(f"loader alone (the engine's CUDA loader, no step) on {cpu_model()}; decode cpu: the workers decode "
          "and crop; decode gpu: they read bytes and draw boxes (the device decodes)")
    for (decode, w), rounds in feeds.items():
        rate = statistics.median(r.images_per_s for r in rounds)
        print(f"  decode {decode:<12} {w} worker{'s' if w > 1 else ' '}: {rate:>8.1f} images/s, {rate / w:>8.1f} per "
              f"worker (rounds {' '.join(f'{r.images_per_s:.1f}' for r in rounds)}; {rounds[0].batches} batches timed)")
    # each ratio is the median over rounds of the ratio within a round: the two pipelines of a round
    # run back to back, so a load that changes between rounds cancels out
    ssl_rounds = round_ratios(rates["ours, SSL"], rates["reference, SSL"])
    ext_rounds = round_ratios(rates["ours, eval"], rates["ours, eval, 0"])
    ssl, ext = statistics.median(ssl_rounds), statistics.median(ext_rounds)
    print(f"ratios per round: SSL {' '.join(f'{r:.2f}' for r in ssl_rounds)}"
          f"; extraction {' '.join(f'{r:.2f}' for r in ext_rounds)}")
    print(f"TARGET ssl_input_vs_reference: {ssl:.2f}x (target >= 1.0) {'PASS' if ssl >= 1.0 else 'FAIL'}")
    print(f"TARGET extraction_workers_vs_main_process: {ext:.2f}x (target >= 1.0) {'PASS' if ext >= 1.0 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
