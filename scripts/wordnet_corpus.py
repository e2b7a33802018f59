"""Build ``core/data/wordnet.txt``: English sentences from Princeton WordNet 3.0 (Debian package ``wordnet-base``).

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb /tmp/wn
    python scripts/wordnet_corpus.py /tmp/wn/usr/share/wordnet

WordNet's synsets carry a gloss: a definition, often followed by quoted example sentences ("the dough rose
overnight"). Those are varied, natural English on every topic, which the project's own template-written
corpus (``core/data/corpus.txt``) is not. The script takes example sentences and definitions of at least
``MIN_WORDS`` words, drops any that nearly duplicates an evaluation sentence (word-set Jaccard >= 0.5, the same
rule ``tests/test_pruning_calibration.py`` checks for both corpora), and writes a seeded sample, one per line.
Licence: the WordNet 3.0 licence (permissive; its notice is kept in ``core/data/CORPUS.md``).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "core" / "data" / "wordnet.txt"
PAIRS = ROOT / "core" / "data" / "sentence_pairs.json"
MIN_WORDS = 6
EXAMPLES, DEFINITIONS = 6000, 4000
SEED = 0


def words(sentence: str) -> set[str]:
    return set(re.findall(r"[a-z]+", sentence.lower()))


def gloss_entries(data_file: Path):
    """``(lexicographer file number, definition, example sentences)`` of every synset of one WordNet data file
    (``data.noun``, ...): the number says the synset's category (5 noun.animal, 13 noun.food, ...)."""
    for line in data_file.read_text(encoding="latin-1").splitlines():
        if line.startswith("  ") or "|" not in line:  # the licence header, or no gloss
            continue
        pieces = [p.strip() for p in line.split("|", 1)[1].split(";")]
        definition = re.sub(r"^\([^)]*\)\s*", "", pieces[0])  # "(botany) tissue that ..." -> "tissue that ..."
        yield int(line.split()[1]), definition, [p.strip('" ') for p in pieces[1:] if p.startswith('"')]


def glosses(folder: Path):
    """(examples, definitions) from WordNet's data.noun / .verb / .adj / .adv files."""
    examples, definitions = set(), set()
    for part in ("noun", "verb", "adj", "adv"):
        for _, definition, sentences in gloss_entries(folder / f"data.{part}"):
            examples.update(sentences)
            if definition and not definition.startswith('"'):
                definitions.add(definition)
    keep = lambda items: sorted(s for s in items if len(s.split()) >= MIN_WORDS and s[0].isalpha())  # noqa: E731
    return keep(examples), keep(definitions)


def sentence(text: str) -> str:
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def main(folder: str) -> int:
    pairs = json.loads(PAIRS.read_text(encoding="utf-8"))["pairs"]
    evaluation = [words(p["a"]) for p in pairs] + [words(p["b"]) for p in pairs]

    def far_from_evaluation(text: str) -> bool:
        w = words(text)
        return all(len(w & e) / len(w | e) < 0.5 for e in evaluation)

    examples, definitions = glosses(Path(folder))
    rng = random.Random(SEED)
    rng.shuffle(examples)
    rng.shuffle(definitions)
    chosen = list(dict.fromkeys(sentence(s) for s in examples[:EXAMPLES] + definitions[:DEFINITIONS]
                                if far_from_evaluation(s)))  # unique, in order
    rng.shuffle(chosen)
    OUT.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    print(f"{len(chosen)} sentences ({len(examples)} examples and {len(definitions)} definitions available) "
          f"-> {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet"))
