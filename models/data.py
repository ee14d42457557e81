"""Build the Fashion-MNIST train / validation / test sets used by adps.

Source: Debian's `dataset-fashion-mnist` package (install with
`sudo apt-get install dataset-fashion-mnist`), which puts the original IDX files in
/usr/share/datasets/fashion-mnist/. Images are 28x28 grey, zero-padded to 32x32
(background stays black) and scaled to [-1, 1] as x = u8/127.5 - 1.

Outputs (under models/data/):
  full/train.npy          uint8 [60000, 32, 32], the padded training images (git-ignored)
  full/val/shard-*.parquet  t10k ids 0..4999    -> "validation" (tuning zeta etc.)
  full/test/shard-*.parquet t10k ids 5000..9999 -> "test" (reporting)
  demo/shard-0000{0,1}.parquet  the first 256 test-part images (ids 5000..5255),
                          2 shards of 128 rows, committed for the README demo.
Parquet shards follow spec §3: `image` struct<bytes: binary, path: string> with PNG
bytes as Hugging Face `datasets` writes it (schema metadata `huggingface`), and `id`
(string, "fmnist-test-05123" = row 5123 of t10k). Val and test are disjoint by id.
"""
import argparse
import gzip
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SOURCE = "/usr/share/datasets/fashion-mnist"
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SIZE = 32
VAL_IDS = range(0, 5000)
TEST_IDS = range(5000, 10000)
SHARD_ROWS = 1000
DEMO_ROWS, DEMO_SHARD_ROWS = 256, 128
HF_FEATURES = {"image": {"_type": "Image"}, "id": {"dtype": "string", "_type": "Value"}}


def read_idx_images(path):
    """uint8 [N, 28, 28] from an IDX3 file (optionally gzipped)."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = np.frombuffer(raw[:16], ">i4")
    if magic != 2051:
        raise ValueError(f"{path}: not an IDX3 image file (magic {magic})")
    return np.frombuffer(raw[16:], np.uint8).reshape(n, h, w)


def pad32(images):
    pad = (SIZE - images.shape[1]) // 2
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))


def load_split(name, source=SOURCE):
    path = os.path.join(source, f"{name}-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        raise SystemExit(f"{path} missing: install it with `sudo apt-get install dataset-fashion-mnist`")
    return pad32(read_idx_images(path))


def to_unit(u8):
    """uint8 [N, 32, 32] -> float32 [N, 1, 32, 32] in [-1, 1]."""
    return (u8.astype(np.float32) / 127.5 - 1.0)[:, None]


def png_bytes(img_u8):
    buf = io.BytesIO()
    Image.fromarray(img_u8, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path, images_u8, ids):
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = pa.array([{"bytes": png_bytes(im), "path": f"{i}.png"} for im, i in zip(images_u8, ids)],
                      type=image_type)
    schema = pa.schema([("image", image_type), ("id", pa.string())],
                       metadata={"huggingface": json.dumps({"info": {"features": HF_FEATURES}})})
    table = pa.Table.from_arrays([images, pa.array(ids, pa.string())], schema=schema)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path)


def write_shards(folder, images_u8, ids, rows):
    for s, start in enumerate(range(0, len(ids), rows)):
        write_shard(os.path.join(folder, f"shard-{s:05d}.parquet"),
                    images_u8[start:start + rows], ids[start:start + rows])


def read_shards(folder):
    """(uint8 [N, 32, 32], ids) from the Parquet shards in a folder, in file order."""
    images, ids = [], []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".parquet"):
            t = pq.read_table(os.path.join(folder, name))
            images += [np.array(Image.open(io.BytesIO(r["bytes"]))) for r in t.column("image").to_pylist()]
            ids += t.column("id").to_pylist()
    return np.stack(images), ids


def load_train():
    path = os.path.join(DATA, "full", "train.npy")
    if not os.path.exists(path):
        raise SystemExit(f"{path} missing: run `python models/data.py` first")
    return np.load(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=SOURCE, help="folder with the Fashion-MNIST IDX .gz files")
    ap.add_argument("--out", default=DATA, help="output folder (default models/data)")
    ap.add_argument("--demo-only", action="store_true", help="only rewrite the committed demo shards")
    args = ap.parse_args()
    test = load_split("t10k", args.source)
    ids = [f"fmnist-test-{i:05d}" for i in range(len(test))]
    if not args.demo_only:
        train = load_split("train", args.source)
        os.makedirs(os.path.join(args.out, "full"), exist_ok=True)
        np.save(os.path.join(args.out, "full", "train.npy"), train)
        for part, rng in (("val", VAL_IDS), ("test", TEST_IDS)):
            write_shards(os.path.join(args.out, "full", part), test[rng.start:rng.stop],
                         ids[rng.start:rng.stop], SHARD_ROWS)
        print(f"train {train.shape}, val {len(VAL_IDS)}, test {len(TEST_IDS)} -> {args.out}/full")
    demo = slice(TEST_IDS.start, TEST_IDS.start + DEMO_ROWS)
    write_shards(os.path.join(args.out, "demo"), test[demo], ids[demo], DEMO_SHARD_ROWS)
    print(f"demo {DEMO_ROWS} test images -> {args.out}/demo")


if __name__ == "__main__":
    main()
