#!/usr/bin/env python3
"""Fixture for `trainer/tests/swd_reference.rs`: Progressive GAN's sliced Wasserstein distance as
the authors compute it (tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py), on
small seeded images, with the random parts (patch centres, directions) written out so that our
Rust implementation can be fed the same ones.

    python3 scripts/swd-reference.py trainer/tests/fixtures/swd_reference.json

Transcribed from the paper's appendix D and the authors' code (needs numpy and scipy):
- Laplacian pyramid: `pyr_down` is a 5x5 binomial filter ([1 4 6 4 1] / 16 on each axis) with
  scipy's "mirror" boundary, then every second pixel; `pyr_up` puts the image on every second pixel
  of zeros and filters with 4 x the kernel; each level but the last keeps `x - pyr_up(pyr_down(x))`.
- Descriptors: 7x7 patches of every channel around centres in [3, size - 3), 128 per image.
- Each set's descriptors are normalised on their own, per channel (mean 0, population std 1).
- SWD: random unit directions; both sets' projections sorted; the mean absolute difference,
  averaged over directions and repeats; reported x 1e3 per level.
"""

import json
import sys

import numpy as np
import scipy.ndimage

G = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6],
                [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256.0


def pyr_down(x):
    return scipy.ndimage.convolve(x, G[None, None], mode="mirror")[:, :, ::2, ::2]


def pyr_up(x):
    s = x.shape
    r = np.zeros((s[0], s[1], s[2] * 2, s[3] * 2), x.dtype)
    r[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(r, G[None, None] * 4.0, mode="mirror")


def pyramid(x, levels):
    p = [np.array(x, np.float32)]  # a copy: the authors feed uint8, so theirs never aliases
    for _ in range(1, levels):
        p.append(pyr_down(p[-1]))
        p[-2] -= pyr_up(p[-1])
    return p


def descriptors(level, centres, size=7):
    h = size // 2
    out = np.stack([level[i, :, y - h:y + h + 1, x - h:x + h + 1] for i, y, x in centres])
    out = out.astype(np.float32)
    out -= out.mean(axis=(0, 2, 3), keepdims=True)
    out /= out.std(axis=(0, 2, 3), keepdims=True)
    return out.reshape(out.shape[0], -1)


def swd(a, b, dirs):
    pa = np.sort(a @ dirs, axis=0)
    pb = np.sort(b @ dirs, axis=0)
    return float(np.mean(np.abs(pa - pb)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "trainer/tests/fixtures/swd_reference.json"
    rng = np.random.default_rng(7)
    n, c, side, levels, per_image, ndirs, repeats = 2, 3, 32, 2, 24, 32, 2
    # Two sets: smooth blobs, and the same with noise and a shift (a "generator" that is off).
    yy, xx = np.mgrid[0:side, 0:side]
    real = np.zeros((n, c, side, side), np.float32)
    for i in range(n):
        for ch in range(c):
            cy, cx = rng.uniform(8, 24, 2)
            real[i, ch] = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(20, 80))
    fake = np.clip(np.roll(real, 3, axis=3) + rng.normal(0, 20, real.shape), 0, 255)
    real, fake = np.round(real), np.round(fake)
    pr, pf = pyramid(real, levels), pyramid(fake, levels)
    result = {"n": n, "c": c, "side": side, "levels": levels,
              "real": real.astype(int).ravel().tolist(), "fake": fake.astype(int).ravel().tolist(),
              "real_pyramid": [np.round(l.astype(np.float64), 3).ravel().tolist() for l in pr], "per_level": []}
    for lr, lf in zip(pr, pf):
        s = lr.shape[2]
        centre = lambda: [[int(i), int(y), int(x)] for i in range(n) for _ in range(per_image)
                          for y, x in [rng.integers(3, s - 3, 2)]]
        cr, cf = centre(), centre()
        da, db = descriptors(lr, cr), descriptors(lf, cf)
        dirs = []
        dists = []
        for _ in range(repeats):
            d = rng.standard_normal((da.shape[1], ndirs))
            d /= np.sqrt(np.sum(np.square(d), axis=0, keepdims=True))
            # Written with 6 digits, and used as written, so that both sides project alike.
            d = np.round(d, 6).astype(np.float32)
            dirs.append(np.round(d.astype(np.float64), 6).ravel().tolist())
            dists.append(swd(da, db, d))
        result["per_level"].append({"size": s, "real_centres": cr, "fake_centres": cf,
                                    "directions": dirs, "ndirs": ndirs,
                                    "swd_x1e3": float(np.mean(dists)) * 1e3})
    with open(out, "w") as f:
        json.dump(result, f)
    print(out, [round(l["swd_x1e3"], 3) for l in result["per_level"]])


if __name__ == "__main__":
    main()
