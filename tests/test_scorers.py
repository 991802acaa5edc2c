"""Scorers against known values: hand-worked SQuAD EM/F1, ROUGE F-measures
worked out by hand, and BLEU against sacrebleu's own API and a hand-computed
geometric mean."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from llmops_cli.measure import scorers
from llmops_cli.measure.scorers import SCORERS, aggregate, exact_match_score, get_scorer, normalize_answer, score_all, token_f1_score


# -- SQuAD normalisation -----------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The  Denver Broncos!", "denver broncos"),
    ("An apple, a day.", "apple day"),
    ("  Levi's   Stadium ", "levis stadium"),
    ("theatre and anthem", "theatre and anthem"),  # articles only as whole words
    ("A", ""),
    ("24–10", "24–10"),  # the en dash is not in string.punctuation (as in the official script)
    ("THE END", "end"),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_score():
    assert exact_match_score("the Denver Broncos.", ["Denver Broncos"]) == 1.0
    assert exact_match_score("Denver", ["Denver Broncos"]) == 0.0
    assert exact_match_score("Levis Stadium", ["Santa Clara", "Levi's Stadium"]) == 1.0  # any reference


@pytest.mark.parametrize("pred, refs, expected", [
    # P = 2/2, R = 2/3 -> 2PR/(P+R) = 0.8
    ("the cat sat", ["a cat sat down"], 0.8),
    # best over references: "dog" -> 0, "cat" -> P 1/2 R 1 = 2/3, "cat sat down" -> 0.8
    ("cat sat", ["dog", "cat", "a cat sat down"], 0.8),
    ("cat sat", ["dog", "cat"], 2 / 3),
    # multiset overlap: common = {cat: 1, dog: 1}; P = R = 2/3
    ("cat cat dog", ["cat dog dog"], 2 / 3),
    ("Denver Broncos", ["denver broncos!"], 1.0),
    ("nothing shared", ["Denver Broncos"], 0.0),
    # an empty (normalised) prediction scores 0 (SQuAD v1.1)
    ("the", ["Denver Broncos"], 0.0),
])
def test_token_f1_score(pred, refs, expected):
    assert token_f1_score(pred, refs) == pytest.approx(expected)


def test_squad_metrics_skip_unscorable_cases():
    outputs = ["Denver Broncos", None, "Von", "anything"]
    refs = [["Denver Broncos"], ["Levi's Stadium"], ["Von Miller"], []]
    em = SCORERS["exact_match"].fn(outputs, refs)
    f1 = SCORERS["token_f1"].fn(outputs, refs)
    assert em.per_case == [1.0, None, 0.0, None]
    assert em.aggregate == pytest.approx(0.5)
    # "Von" vs "Von Miller": P 1, R 1/2 -> 2/3
    assert f1.per_case == pytest.approx([1.0, None, 2 / 3, None])
    assert f1.aggregate == pytest.approx((1 + 2 / 3) / 2)


def test_all_unscored_aggregate_is_none():
    res = SCORERS["token_f1"].fn([None, None], [["a"], ["b"]])
    assert res.per_case == [None, None] and res.aggregate is None
    assert SCORERS["bleu"].fn([None], [["x"]]).aggregate is None
    assert SCORERS["rougeL"].fn([None], [["x"]]).aggregate is None


# -- ROUGE ---------------------------------------------------------------------

@pytest.mark.parametrize("metric, pred, refs, expected", [
    # unigram overlap the×2, cat, on, mat = 5 of 6 on each side
    ("rouge1", "the cat sat on the mat", ["the cat was on the mat"], 5 / 6),
    # LCS "the cat on the mat" = 5 of 6
    ("rougeL", "the cat sat on the mat", ["the cat was on the mat"], 5 / 6),
    # all unigrams shared, LCS "the sat on the" = 4 of 6, bigrams 4 of 5 shared
    ("rouge1", "the mat sat on the cat", ["the cat sat on the mat"], 1.0),
    ("rougeL", "the mat sat on the cat", ["the cat sat on the mat"], 4 / 6),
    ("rouge2", "the mat sat on the cat", ["the cat sat on the mat"], 4 / 5),
    # Porter stemming on: cats->cat, running->run; 3 of 4 tokens shared (1 of 4 unstemmed)
    ("rouge1", "the cats were running", ["the cat was run"], 3 / 4),
    # best over references
    ("rouge1", "the cat sat", ["dog", "the cat sat"], 1.0),
    # P = 3/3, R = 3/6 -> F = 2/3
    ("rougeL", "the cat sat", ["the cat sat on the mat"], 2 / 3),
    ("rouge1", "nothing here", ["the cat"], 0.0),
])
def test_rouge_known_values(metric, pred, refs, expected):
    res = SCORERS[metric].fn([pred], [refs])
    assert res.per_case[0] == pytest.approx(expected)
    assert res.info["use_stemmer"] is True


def test_rouge_none_and_mean():
    res = SCORERS["rouge1"].fn([None, "the cat sat on the mat", "nothing here"],
                               [["x"], ["the cat was on the mat"], ["the cat"]])
    assert res.per_case[0] is None
    assert res.per_case[1:] == pytest.approx([5 / 6, 0.0])
    assert res.aggregate == pytest.approx((5 / 6) / 2)


# -- BLEU ------------------------------------------------------------------

# The example from sacrebleu's README (two reference streams).
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def _per_case_refs(streams):
    return [[s[i] for s in streams if s[i] is not None] for i in range(len(streams[0]))]


def test_bleu_readme_example():
    res = SCORERS["bleu"].fn(README_SYS, _per_case_refs(README_REFS))
    expected = sacrebleu.corpus_bleu(README_SYS, README_REFS).score
    assert res.aggregate == pytest.approx(expected)
    assert round(res.aggregate, 2) == 48.53  # the value printed in sacrebleu's README
    assert res.scale == 100.0 and get_scorer("bleu").scale == 100.0
    assert "nrefs:2" in res.info["signature"] and "tok:13a" in res.info["signature"]


def test_bleu_hand_computed():
    # 13a tokens; precisions 5/6, 3/5, 2/4, 1/3; equal lengths so BP = 1
    res = SCORERS["bleu"].fn(["the cat sat on the mat"], [["the cat sat on a mat"]])
    expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4) + math.log(1 / 3)) / 4)
    assert expected == pytest.approx(53.728, abs=1e-3)
    assert res.aggregate == pytest.approx(expected)
    assert SCORERS["bleu"].fn(["a b c d e"], [["a b c d e"]]).aggregate == pytest.approx(100.0)
    assert SCORERS["bleu"].fn(["v w x y z"], [["a b c d e"]]).aggregate == pytest.approx(0.0)


def test_bleu_per_case_is_sentence_bleu():
    res = SCORERS["bleu"].fn(README_SYS, _per_case_refs(README_REFS))
    for i, hyp in enumerate(README_SYS):
        expected = sacrebleu.sentence_bleu(hyp, [README_REFS[0][i], README_REFS[1][i]]).score
        assert res.per_case[i] == pytest.approx(expected)


def test_bleu_variable_reference_counts_and_none_outputs():
    outputs = ["The dog bit the man.", None, "The man had just bitten him.", "It wasn't surprising."]
    refs = [["The dog bit the man.", "The dog had bit the man."], ["x y z"],
            ["The man bit him first."], ["It was not unexpected.", "No one was surprised."]]
    res = SCORERS["bleu"].fn(outputs, refs)
    assert res.per_case[1] is None and res.stats[1] is None
    # Independent check: a repeated reference changes neither n-gram clipping
    # nor the closest reference length, so pad single-reference cases with a copy.
    hyps = [outputs[i] for i in (0, 2, 3)]
    streams = [[refs[i][0] for i in (0, 2, 3)], [refs[i][-1] for i in (0, 2, 3)]]
    assert res.aggregate == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)


def test_bleu_aggregate_from_stats_equals_corpus_score():
    refs = _per_case_refs(README_REFS)
    res = SCORERS["bleu"].fn(README_SYS, refs)
    assert aggregate("bleu", res.per_case, res.stats) == pytest.approx(res.aggregate)
    # ... also on a subset (what bootstrap resampling relies on)
    sub = [0, 2]
    got = aggregate("bleu", [res.per_case[i] for i in sub], [res.stats[i] for i in sub])
    expected = sacrebleu.corpus_bleu([README_SYS[i] for i in sub], [[s[i] for i in sub] for s in README_REFS]).score
    assert got == pytest.approx(expected)
    # ... and corpus BLEU is not the mean of sentence BLEU
    assert res.aggregate != pytest.approx(sum(res.per_case) / 3)
    assert aggregate("bleu", [None], [None]) is None


def test_aggregate_of_mean_metrics():
    assert aggregate("token_f1", [1.0, None, 0.5]) == pytest.approx(0.75)
    assert aggregate("exact_match", [None]) is None


def test_score_all_and_registry():
    assert {"exact_match", "token_f1", "bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(SCORERS)
    res = score_all(["exact_match", "bleu"], ["Denver Broncos"], [["Denver Broncos"]])
    assert set(res) == {"exact_match", "bleu"} and res["exact_match"].aggregate == 1.0
    with pytest.raises(KeyError):
        score_all(["no_such_metric"], ["a"], [["a"]])
    with pytest.raises(KeyError):
        get_scorer("no_such_metric")


def test_register_custom_scorer():
    @scorers.register("_test_len", description="length")
    def _len(outputs, references):
        return scorers._per_case("_test_len", outputs, references, lambda o, refs: float(len(o)))

    try:
        assert score_all(["_test_len"], ["abc", None], [["x"], ["y"]])["_test_len"].per_case == [3.0, None]
    finally:
        SCORERS.pop("_test_len")


def test_empty_output_is_scored_zero_not_unscored():
    names = ["exact_match", "token_f1", "bleu", "rouge1", "rougeL"]
    res = score_all(names, ["", "Denver Broncos"], [["Denver Broncos"], ["Denver Broncos"]])
    for name in names:
        assert res[name].per_case[0] == 0.0, name
        assert res[name].per_case[1] == pytest.approx(res[name].scale), name
    assert res["token_f1"].aggregate == pytest.approx(0.5)


def test_scoring_libraries_load_without_their_optional_scipy_and_redis_which_stay_importable():
    """rouge-score (through NLTK) and sacrebleu (through portalocker) try to
    import SciPy and redis; scoring blocks both for the length of those
    imports (62 + 6 MB of RSS), and they import normally afterwards."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from llmops_cli.measure.scorers import score_all\n"
        "r = score_all(['bleu', 'rougeL'], ['the cat sat'], [['the cat sat on']])\n"
        "print(round(r['bleu'].per_case[0], 4), round(r['rougeL'].per_case[0], 4))\n"
        "print('scipy' in sys.modules, 'redis' in sys.modules)\n"
        "import redis, scipy.stats\n"
        "print(redis.Redis is not None, scipy.stats.norm.cdf(0))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "71.6531 0.8571"
    assert out[1] == "False False"
    assert out[2] == "True 0.5"


def test_bleu_leaves_no_tokenized_lines_memoised():
    """sacrebleu memoises up to 65,536 tokenized lines per tokenizer class;
    after scoring, none of the run's outputs and references stay held."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

    outs = [f"answer number {i}" for i in range(50)]
    r = score_all(["bleu"], outs, [[f"the answer number {i}"] for i in range(50)])
    assert all(v is not None and v > 0 for v in r["bleu"].per_case)
    assert Tokenizer13a.__call__.cache_info().currsize == 0
    assert TokenizerRegexp.__call__.cache_info().currsize == 0
