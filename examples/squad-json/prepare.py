"""Convert the SQuAD v1.1 dev article "Super_Bowl_50" into this example's data.

    python examples/squad-json/prepare.py [SQUAD_JSON] [--out DIR]

``SQUAD_JSON`` is the article in the official SQuAD JSON format (default:
``../shared/data/squad-superbowl/squad-v1.1-dev-superbowl50.json``, relative
to the repository root); ``--out`` is where ``corpus.jsonl`` and
``questions.jsonl`` are written (default: ``data/`` next to this script).
Standard library only; the output is deterministic (same input, same bytes).

* ``corpus.jsonl``: the article's 54 paragraphs, ``{id: p00…p53, title, text}``
  (the same file as ``examples/squad-rag/data/corpus.jsonl``).
* ``questions.jsonl``: its 810 questions, ``{id, question, answers, paragraph,
  qtype}``: ``answers`` are the distinct human reference answers in their
  order, ``paragraph`` is the id of the source paragraph, ``qtype`` is the
  question type below.

Question type (``qtype``), from the question text alone: lowercase it, split
it into words (letters, digits and apostrophes), and look at the *first*
question word among what, which, who, whom, whose, when, where, why, how:

* ``how many`` — "how many" or "how much" (the answer is a count or an
  amount);
* ``who`` — who, whom, whose;
* ``when`` — when; or what/which directly followed by year, years, day,
  date, month, decade or time ("In what year ...", "On what day ...");
* ``what`` — any other what or which;
* ``other`` — where, why, any other how ("how old", "how did"), or no
  question word at all.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "data" / "squad-superbowl" / "squad-v1.1-dev-superbowl50.json"

QTYPES = ("how many", "who", "when", "what", "other")
WH_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how"}
TIME_WORDS = {"year", "years", "day", "date", "month", "decade", "time"}
_WORD = re.compile(r"[a-z0-9']+")


def qtype(question: str) -> str:
    """The question type of ``question``; see the module docstring."""
    words = _WORD.findall(question.lower())
    i = next((k for k, w in enumerate(words) if w in WH_WORDS), None)
    if i is None:
        return "other"
    wh, after = words[i], words[i + 1] if i + 1 < len(words) else ""
    if wh == "how":
        return "how many" if after in ("many", "much") else "other"
    if wh in ("who", "whom", "whose"):
        return "who"
    if wh == "when" or (wh in ("what", "which") and after in TIME_WORDS):
        return "when"
    if wh in ("what", "which"):
        return "what"
    return "other"


def convert(squad: dict) -> tuple[list[dict], list[dict]]:
    """``(corpus rows, question rows)`` of the first article of ``squad``."""
    article = squad["data"][0]
    corpus, questions = [], []
    for n, para in enumerate(article["paragraphs"]):
        pid = f"p{n:02d}"
        corpus.append({"id": pid, "title": article["title"], "text": para["context"]})
        for qa in para["qas"]:
            answers = list(dict.fromkeys(a["text"] for a in qa["answers"]))
            questions.append({"id": qa["id"], "question": qa["question"], "answers": answers, "paragraph": pid,
                              "qtype": qtype(qa["question"])})
    return corpus, questions


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="the SQuAD JSON file (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=HERE / "data", help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        squad = json.loads(args.source.read_text(encoding="utf-8"))
    except OSError as e:
        print(f"cannot read {args.source}: {e.strerror or e}", file=sys.stderr)
        return 2
    corpus, questions = convert(squad)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "corpus.jsonl", corpus)
    write_jsonl(args.out / "questions.jsonl", questions)
    counts = {t: sum(q["qtype"] == t for q in questions) for t in QTYPES}
    print(f"{len(corpus)} paragraphs, {len(questions)} questions → {args.out}; "
          + ", ".join(f"{t}: {n}" for t, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
