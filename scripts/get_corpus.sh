#!/usr/bin/env bash
# Builds Strata's default English corpus from Debian packages: one UTF-8 text file per document,
# split by document into train/ and validation/ so training never sees a validation document.
#
#   scripts/get_corpus.sh [--install] [OUT_DIR]     (default OUT_DIR: <repo>/corpus)
#
# Sources (see docs/data.md for why these and not others):
#   linux-doc-6.1   kernel documentation, reStructuredText sources   GPL-2
#   python3.11-doc  Python documentation, reStructuredText sources   PSF-2
#   bible-kjv-text  King James Bible, one document per book          public domain
# Split: documents are listed in a fixed order (source, then path in C collation); every 50th
# (positions 50, 100, ...) goes to validation/. The result depends only on the package versions.
set -euo pipefail
export LC_ALL=C

install=0
if [[ "${1:-}" == "--install" ]]; then install=1; shift; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/corpus}"

linux_src=/usr/share/doc/linux-doc-6.1/html/_sources
python_src=/usr/share/doc/python3.11/html/_sources
packages=(linux-doc-6.1 python3.11-doc bible-kjv bible-kjv-text)

missing=()
[[ -d "$linux_src" ]] || missing+=(linux-doc-6.1)
[[ -d "$python_src" ]] || missing+=(python3.11-doc)
command -v bible >/dev/null 2>&1 || missing+=(bible-kjv bible-kjv-text)
if ((${#missing[@]})); then
  if ((install)); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
  else
    echo "get_corpus.sh: missing Debian packages: ${missing[*]}" >&2
    echo "  install them with: apt-get install -y --no-install-recommends ${packages[*]}" >&2
    echo "  or re-run with --install (as root)" >&2
    exit 1
  fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/docs"

# Each document becomes docs/<source>__<flattened path>.txt. Invalid UTF-8 (none today) would be
# replaced later by `strata prepare`, which counts and reports it.
copy_tree() {  # source_name root suffix
  local name="$1" root="$2" suffix="$3"
  (cd "$root" && find . -type f -name "*$suffix" | sed 's|^\./||' | sort) |
    while IFS= read -r rel; do
      flat="${rel%"$suffix"}"
      cp "$root/$rel" "$tmp/docs/${name}__${flat//\//__}.txt"
    done
}
copy_tree linux "$linux_src" .rst.txt
copy_tree python "$python_src" .rst.txt

# The bible program prints "Book N" headings before each chapter and " V text" verses wrapped at
# 80 columns; a book is one document of plain paragraphs, one verse per line, without numbers.
bible -l0 'Gen1:1-Rev22:21' | awk -v dir="$tmp/docs" '
  /^[1-3]? ?[A-Z][A-Za-z ]* [0-9]+$/ {
    book = $0; sub(/ [0-9]+$/, "", book); gsub(/ /, "_", book);
    if (book != current) {
      if (file != "") close(file);
      n++; current = book; file = sprintf("%s/bible__%02d_%s.txt", dir, n, book);
    }
    next
  }
  /^ *[0-9]+ / { sub(/^ *[0-9]+ /, ""); if (file != "") print > file; next }
  NF > 0 && file != "" { print > file }
'

rm -rf "$out"
mkdir -p "$out/train" "$out/validation"
(cd "$tmp/docs" && ls | sort) | awk '{ print ((NR % 50 == 0) ? "validation" : "train") "\t" $0 }' |
  while IFS=$'\t' read -r split name; do mv "$tmp/docs/$name" "$out/$split/$name"; done

for split in train validation; do
  files=$(find "$out/$split" -type f | wc -l)
  bytes=$(find "$out/$split" -type f -print0 | du -cb --files0-from=- | tail -1 | cut -f1)
  words=$(find "$out/$split" -type f -print0 | xargs -0 cat | wc -w)
  echo "$split: $files documents, $bytes bytes, $words words"
done | tee "$out/STATS"
echo "corpus written to $out"
