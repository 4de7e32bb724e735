#!/usr/bin/env python3
"""Write the image-to-image test fixture: a sample of the real emoji pairs at 32x32.

Every 12th code point (by code point) that both Google (npm emoji-datasource-google) and Twitter
(npm emoji-datasource-twitter) draw, each alpha composited on white and downscaled to 32x32,
into tests/fixtures/pairs/{google,twitter}/CODEPOINT.png: the `folder:A,B` layout the trainer
reads, so CI trains Pix2Pix on real art without fetching the packages. Run once after
    bash scripts/fetch-data.sh emoji && bash scripts/fetch-data.sh emoji-twitter
    pip install pillow
    python3 scripts/make-pair-fixture.py
"""
import json
import os
import sys

from PIL import Image

STEP = 12
SIZE = 32
VENDORS = [("google", "data/emoji"), ("twitter", "data/emoji-twitter")]
OUT = "tests/fixtures/pairs"

entries = json.load(open(os.path.join(VENDORS[0][1], "emoji.json")))
both = sorted(
    (e["unified"], e["image"])
    for e in entries
    if all(e.get(f"has_img_{v}") for v, _ in VENDORS)
)
chosen = both[::STEP]
for vendor, folder in VENDORS:
    os.makedirs(os.path.join(OUT, vendor), exist_ok=True)
    for unified, image in chosen:
        rgba = Image.open(os.path.join(folder, "png", image)).convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
        rgb = rgb.resize((SIZE, SIZE), Image.LANCZOS)
        rgb.save(os.path.join(OUT, vendor, unified + ".png"), optimize=True)
print(f"{len(chosen)} pairs of {len(both)} in {OUT}", file=sys.stderr)
