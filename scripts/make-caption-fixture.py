#!/usr/bin/env python3
"""Write StackGAN's test fixture: real captioned emoji, laid out as `POCKETGAN_DATA` expects.

Four emoji per category (the first four of each in emoji.json's order that Google draws), their
64 px PNGs unchanged, their entries of emoji-datasource's emoji.json and of emojilib's
emoji-en-US.json, into tests/fixtures/captions/{emoji/png, emoji/emoji.json,
emoji-keywords/emoji-en-US.json}: CI trains StackGAN on real art and real captions without
fetching the packages. Run once after
    bash scripts/fetch-data.sh emoji emoji-keywords
    python3 scripts/make-caption-fixture.py
"""
import json
import os
import shutil

PER_CATEGORY = 4
OUT = "tests/fixtures/captions"

entries = json.load(open("data/emoji/emoji.json"))
keywords = json.load(open("data/emoji-keywords/emoji-en-US.json"))
taken, chosen = {}, []
for e in entries:
    if e.get("has_img_google") is False or not os.path.exists(f"data/emoji/png/{e['image']}"):
        continue
    cat = e["category"]
    if taken.get(cat, 0) < PER_CATEGORY:
        taken[cat] = taken.get(cat, 0) + 1
        chosen.append(e)
os.makedirs(f"{OUT}/emoji/png", exist_ok=True)
os.makedirs(f"{OUT}/emoji-keywords", exist_ok=True)
for e in chosen:
    shutil.copy(f"data/emoji/png/{e['image']}", f"{OUT}/emoji/png/{e['image']}")
FIELDS = ["name", "unified", "non_qualified", "image", "category", "has_img_google"]
json.dump([{k: e.get(k) for k in FIELDS} for e in chosen], open(f"{OUT}/emoji/emoji.json", "w"), indent=0)
chars = {"".join(chr(int(h, 16)) for h in e["unified"].split("-")) for e in chosen}
chars |= {c.replace("\ufe0f", "") for c in chars}
kept = {k: v for k, v in keywords.items() if k in chars}
json.dump(kept, open(f"{OUT}/emoji-keywords/emoji-en-US.json", "w"), ensure_ascii=False, indent=0)
shutil.copy("data/emoji-keywords/LICENSE", f"{OUT}/emoji-keywords/LICENSE")
print(f"{len(chosen)} emoji in {len(taken)} categories, {len(kept)} with keywords, into {OUT}")
