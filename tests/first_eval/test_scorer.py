"""The multiple-choice scorer: prompts, letter tokens, readings against a brute-force forward pass,
batching/padding and the shared-prefix KV cache against unbatched passes (within 1e-5),
dataset layouts, option-text log-likelihoods, and — slow — the real SmolLM2 and two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from first_eval.data import Item, load_dataset
from first_eval.errors import UserError
from first_eval.predictions import read_predictions, write_predictions
from first_eval.prompts import (build_prompt, chat_messages, plain_prompt, question_block,
                                select_fewshot, user_message)
from first_eval.scorer import ItemScore, Scorer, _budget_batches, default_batch_tokens

torch = pytest.importorskip("torch")

TOL = 1e-5

QUESTIONS = [
    Item("q0", "What is the capital of France?", ("Lyon", "Paris", "Nice", "Lille"), 1, "capital", "test"),
    Item("q1", "2 + 2 = ?", ("3", "4"), 1, "math", "test"),
    Item("q2", "Which planet is known as the red planet, the fourth from the Sun in our solar system?",
         ("Venus", "Mars", "Jupiter"), 1, "science", "test"),
    Item("q3", "Pick the even number.", tuple(str(n) for n in (1, 3, 5, 7, 9, 11, 13, 15, 17, 20)), 9,
         "math", "test"),
    Item("q4", "Which of these is a mammal that lives in the ocean and breathes air through a blowhole "
         "on the top of its head?", ("Shark", "Dolphin", "Octopus", "Tuna"), 1, "science", "test"),
    Item("q5", "Colour of the sky on a clear day?", ("Blue", "Green", "Red", "Black"), 0, "science", "test"),
]
SHOTS = [
    Item("s0", "What is the capital of Italy?", ("Rome", "Milan", "Turin", "Naples"), 0, "capital", "train"),
    Item("s1", "3 + 4 = ?", ("6", "7", "8", "9"), 1, "math", "train"),
    Item("s2", "Which gas do plants absorb?", ("Oxygen", "Nitrogen", "Carbon dioxide", "Helium"), 2,
         "science", "train"),
]


def _probs(scores: list[ItemScore]) -> list[np.ndarray]:
    return [np.asarray(s.probs) for s in scores]


def _max_diff(a: list[ItemScore], b: list[ItemScore]) -> float:
    assert [s.id for s in a] == [s.id for s in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(_probs(a), _probs(b)))


def _reference(model, tokenizer, prompt: str, letters: list[int], *, special: bool = True):
    """Brute force: the whole model (head at every position) on the unpadded prompt."""
    ids = tokenizer(prompt, add_special_tokens=special, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(ids).logits[0, -1].double()
    logp = torch.log_softmax(logits, -1)
    probs = torch.softmax(logp[letters], -1).numpy()
    return probs, float(logp[letters].exp().sum()), int(logits.argmax())


# --------------------------------------------------------------------------- prompts
def test_plain_prompt_is_exact():
    assert question_block(QUESTIONS[1]) == "Question: 2 + 2 = ?\nA. 3\nB. 4\nAnswer:"
    text = plain_prompt(QUESTIONS[1], SHOTS[:2])
    assert text == ("Question: What is the capital of Italy?\nA. Rome\nB. Milan\nC. Turin\nD. Naples\n"
                    "Answer: A\n\nQuestion: 3 + 4 = ?\nA. 6\nB. 7\nC. 8\nD. 9\nAnswer: B\n\n"
                    "Question: 2 + 2 = ?\nA. 3\nB. 4\nAnswer:")
    assert build_prompt(QUESTIONS[3], "plain").count("\n") == 11  # ten options, J included
    assert "\nJ. 20\nAnswer:" in build_prompt(QUESTIONS[3], "plain")


def test_chat_prompt_ends_at_the_assistant_turn(smollm2_tokenizer):
    text = build_prompt(QUESTIONS[0], "chat", tokenizer=smollm2_tokenizer, fewshot=SHOTS[:1])
    assert text.endswith(user_message(QUESTIONS[0]) + "<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_start|>assistant\nA<|im_end|>" in text  # the worked example's answer turn
    messages = chat_messages(QUESTIONS[0], SHOTS[:1])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]


def test_chat_template_without_one_is_a_user_error(smollm2_tokenizer):
    class NoTemplate:
        chat_template = None

    with pytest.raises(UserError, match="chat template"):
        build_prompt(QUESTIONS[0], "chat", tokenizer=NoTemplate())
    with pytest.raises(UserError, match="unknown template"):
        build_prompt(QUESTIONS[0], "fancy")


def test_select_fewshot():
    pool = SHOTS + QUESTIONS
    assert select_fewshot(pool, 2) == SHOTS[:2]
    assert select_fewshot(pool, 0) == []
    assert select_fewshot(pool, 2, exclude_ids=["s0"]) == SHOTS[1:3]
    drawn = select_fewshot(pool, 3, strategy="random", seed=1)
    assert drawn == select_fewshot(pool, 3, strategy="random", seed=1) and len(set(drawn)) == 3
    with pytest.raises(UserError, match="only 3"):
        select_fewshot(SHOTS, 4)
    with pytest.raises(UserError, match="non-negative"):
        select_fewshot(SHOTS, -1)
    with pytest.raises(UserError, match="strategy"):
        select_fewshot(SHOTS, 1, strategy="balanced")


# --------------------------------------------------------------------------- letter tokens
def test_letter_tokens_follow_the_template(tiny_llama):
    model, tok = tiny_llama
    plain = Scorer(model, tok, progress=False)
    assert plain.letter_ids(4) == [tok.encode(" " + c, add_special_tokens=False)[0] for c in "ABCD"]
    assert plain.letter_ids(4) == [330, 389, 340, 422]  # " A" … " D" in SmolLM2's vocabulary
    chat = Scorer(model, tok, template="chat", progress=False)
    assert chat.letter_ids(2) == [tok.encode(c, add_special_tokens=False)[0] for c in "AB"]


def test_multi_token_letter_is_a_clear_error(tiny_llama, monkeypatch):
    import first_eval.scorer as scorer_module

    model, tok = tiny_llama
    monkeypatch.setattr(scorer_module, "letter_prefix", lambda template: " (option ")
    scorer = Scorer(model, tok, progress=False)
    with pytest.raises(UserError, match="not one token"):
        scorer.score(QUESTIONS[:1])


# --------------------------------------------------------------------------- readings
@pytest.mark.parametrize("template", ["plain", "chat"])
def test_readings_equal_a_full_forward_pass(tiny_llama, template):
    model, tok = tiny_llama
    scorer = Scorer(model, tok, template=template, progress=False)
    scores = scorer.score(QUESTIONS)
    for item, s in zip(QUESTIONS, scores):
        assert s.prompt == build_prompt(item, template, tokenizer=tok)
        letters = scorer.letter_ids(len(item.choices))
        probs, mass, top1 = _reference(model, tok, s.prompt, letters, special=template == "plain")
        assert len(s.probs) == len(item.choices)
        assert sum(s.probs) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(s.probs, probs, atol=TOL, rtol=0)
        assert s.option_mass == pytest.approx(mass, abs=TOL)
        assert s.top1_correct == (top1 == letters[item.label])
        assert (s.id, s.label, s.subject, s.split) == (item.id, item.label, item.subject, item.split)


def test_results_keep_the_input_order_and_rows_validate(tiny_llama, tmp_path):
    model, tok = tiny_llama
    shuffled = [QUESTIONS[i] for i in (3, 0, 5, 1, 4, 2)]
    scores = Scorer(model, tok, batch_tokens=64, progress=False).score(shuffled)
    assert [s.id for s in scores] == [q.id for q in shuffled]
    path = write_predictions([s.as_row(model="tiny", dataset="toy") for s in scores], tmp_path / "p.jsonl")
    frame = read_predictions(path)
    assert list(frame["id"]) == [q.id for q in shuffled]
    assert list(frame["n_options"]) == [len(q.choices) for q in shuffled]
    assert frame["prompt"].iloc[0].startswith("Question: Pick the even number.")
    assert Scorer(model, tok, progress=False).score([]) == []


# --------------------------------------------------------------------------- batching and padding
def test_budget_batches_respect_the_budget():
    lengths = [50, 7, 30, 30, 12, 90, 3]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches = list(_budget_batches(order, lengths, 100))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * lengths[b[0]] <= 100
        assert lengths[b[0]] == max(lengths[i] for i in b)
    assert list(_budget_batches(order, lengths, 1)) == [[i] for i in order]  # too small: one a batch


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padded_batches_equal_unpadded_single_passes(tiny_llama, padding_side):
    model, tok = tiny_llama
    single = Scorer(model, tok, batch_tokens=1, cache_prefix=False, progress=False).score(QUESTIONS)
    batched = Scorer(model, tok, batch_tokens=10_000, padding_side=padding_side, progress=False).score(QUESTIONS)
    lengths = {len(tok(s.prompt).input_ids) for s in single}
    assert len(lengths) == len(QUESTIONS)  # mixed lengths: every row but the longest is padded
    assert _max_diff(single, batched) < TOL
    assert [s.top1_correct for s in single] == [s.top1_correct for s in batched]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("template", ["plain", "chat"])
def test_cached_prefix_equals_no_cache(tiny_llama, padding_side, template):
    model, tok = tiny_llama
    kw = dict(template=template, fewshot=SHOTS, progress=False)
    scorer = Scorer(model, tok, padding_side=padding_side, batch_tokens=90, **kw)
    seqs = scorer._encode([scorer.prompt(q) for q in QUESTIONS])
    assert scorer._shared_prefix(seqs) >= 60  # the three worked examples are cached
    cached = scorer.score(QUESTIONS)
    plain = Scorer(model, tok, cache_prefix=False, batch_tokens=1, **kw).score(QUESTIONS)
    assert _max_diff(cached, plain) < TOL
    assert [s.prompt for s in cached] == [s.prompt for s in plain]


def test_shared_prefix_is_cut_from_the_joint_tokenization(tiny_llama):
    model, tok = tiny_llama
    scorer = Scorer(model, tok, progress=False)
    seqs = [[1, 2, 3] * 10 + [7, 8], [1, 2, 3] * 10 + [7, 9], [1, 2, 3] * 10 + [5]]
    assert scorer._shared_prefix(seqs) == 30
    assert scorer._shared_prefix(seqs[:1]) == 0
    assert scorer._shared_prefix([[1] * 40, [1] * 20]) == 19  # every row keeps a token to run
    assert scorer._shared_prefix([[1, 2] * 5, [1, 2] * 5]) == 0  # below 16 tokens: not worth it


# --------------------------------------------------------------------------- option-text reading
OVERLAP = Item("o1", "Who is the capital of France named after?", ("Paris", "Paris Hilton", "Paris of Troy"), 2)


@pytest.mark.parametrize("items", [QUESTIONS[:3], [OVERLAP]], ids=["three", "shared-option-prefix"])
def test_option_text_loglik_equals_brute_force(tiny_llama, items):
    model, tok = tiny_llama
    scores = Scorer(model, tok, option_text=True, fewshot=SHOTS[:1], progress=False).score(items)
    for item, s in zip(items, scores):
        assert len(s.option_loglik) == len(item.choices)
        ctx = tok(s.prompt).input_ids
        for text, got in zip(item.choices, s.option_loglik):
            whole = tok(s.prompt + " " + text).input_ids
            with torch.inference_mode():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
            want = sum(float(logp[p - 1, whole[p]]) for p in range(len(ctx), len(whole)))
            assert got == pytest.approx(want, abs=1e-4)
        row = s.as_row(model="m", dataset="d")
        assert row["acc"] == (int(np.argmax(s.option_loglik)) == item.label)
        norm = np.asarray(s.option_loglik) / np.asarray([len(c) for c in item.choices])
        assert row["acc_norm"] == (int(np.argmax(norm)) == item.label)


# --------------------------------------------------------------------------- datasets
def _write_layouts(tmp_path, items):
    generic, labeled = tmp_path / "generic.jsonl", tmp_path / "csqa.jsonl"
    with open(generic, "w") as g, open(labeled, "w") as c:
        for it in items:
            letters = "ABCDEFGHIJ"[: len(it.choices)]
            g.write(json.dumps({"id": it.id, "question": it.question, "choices": list(it.choices),
                                "answer": it.label}) + "\n")
            c.write(json.dumps({"id": it.id, "question": {"stem": it.question, "choices": [
                {"label": L, "text": t} for L, t in zip(letters, it.choices)]},
                "answerKey": letters[it.label]}) + "\n")
    return generic, labeled


def test_two_dataset_layouts_give_identical_predictions(tiny_llama, tmp_path):
    model, tok = tiny_llama
    generic, labeled = _write_layouts(tmp_path, QUESTIONS)
    scorer = Scorer(model, tok, progress=False)
    a = scorer.score(load_dataset(str(generic)))
    b = scorer.score(load_dataset(str(labeled)))
    assert [s.as_row(model="m", dataset="d") for s in a] == [s.as_row(model="m", dataset="d") for s in b]


def test_default_budget_follows_the_device(tiny_llama):
    model, tok = tiny_llama
    assert default_batch_tokens(torch.device("cpu")) == 1024 == Scorer(model, tok).batch_tokens
    assert default_batch_tokens(torch.device("cuda")) == 16384


def test_bad_arguments_are_user_errors(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(UserError, match="batch-tokens"):
        Scorer(model, tok, batch_tokens=0)
    with pytest.raises(UserError, match="padding_side"):
        Scorer(model, tok, padding_side="middle")
    with pytest.raises(UserError, match="unknown template"):
        Scorer(model, tok, template="fancy")


# --------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def smollm2():
    from first_eval.zoo import load_model

    model, tok = load_model("smollm2-135m")
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    return model, tok


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["countries", "mmlu"])
def test_smollm2_scores_20_items(smollm2, dataset):
    model, tok = smollm2
    items = load_dataset(dataset, limit=20, seed=0)
    scores = Scorer(model, tok, progress=False).score(items)
    assert len(scores) == 20
    for item, s in zip(items, scores):
        assert s.prompt == plain_prompt(item)
        assert len(s.probs) == len(item.choices) and sum(s.probs) == pytest.approx(1, abs=1e-9)
        assert 0.0 < s.option_mass <= 1.0
    # The letters are plausible next tokens: far above 4 random tokens' share of a 49,152 vocabulary.
    assert np.mean([s.option_mass for s in scores]) > 0.01
    probs, mass, _ = _reference(model, tok, scores[0].prompt, [330, 389, 340, 422][: len(items[0].choices)])
    np.testing.assert_allclose(scores[0].probs, probs, atol=TOL, rtol=0)


@pytest.mark.slow
def test_smollm2_batched_equals_unbatched(smollm2):
    model, tok = smollm2
    items = load_dataset("mmlu", limit=8, seed=3)
    single = Scorer(model, tok, batch_tokens=1, progress=False).score(items)
    assert len({len(tok(s.prompt).input_ids) for s in single}) >= 6  # mixed lengths
    for side in ("right", "left"):
        batched = Scorer(model, tok, padding_side=side, progress=False).score(items)
        assert _max_diff(single, batched) < TOL


@pytest.mark.slow
def test_smollm2_kshot_cached_prefix_equals_no_cache(smollm2):
    model, tok = smollm2
    shots = select_fewshot(load_dataset("countries", split="train"), 5)
    items = load_dataset("countries", limit=6, seed=1)
    cached = Scorer(model, tok, fewshot=shots, progress=False).score(items)
    uncached = Scorer(model, tok, fewshot=shots, cache_prefix=False, batch_tokens=1,
                      progress=False).score(items)
    assert _max_diff(cached, uncached) < TOL


@pytest.mark.slow
def test_smollm2_two_layouts_identical(smollm2, tmp_path):
    model, tok = smollm2
    generic, labeled = _write_layouts(tmp_path, load_dataset("mmlu", limit=6, seed=5))
    scorer = Scorer(model, tok, progress=False)
    a, b = scorer.score(load_dataset(str(generic))), scorer.score(load_dataset(str(labeled)))
    assert [s.as_row(model="m", dataset="d") for s in a] == [s.as_row(model="m", dataset="d") for s in b]


# --------------------------------------------------------------------------- two processes
_DIST_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    sys.path.insert(0, {tests!r})
    from tiny_models import make_tiny_llama
    from first_eval.data import load_dataset
    from first_eval.scorer import Scorer, process_state
    from first_eval.zoo import load_tokenizer

    torch.set_num_threads(1)
    tok = load_tokenizer("smollm2-135m")
    items = load_dataset({data!r})
    scores = Scorer(make_tiny_llama(tok), tok, batch_tokens=64, progress=False).score(items)
    state = process_state()
    if state.is_main_process:
        with open({out!r}, "w") as fh:
            json.dump({{"world": state.num_processes,
                        "rows": [s.as_row(model="m", dataset="d") for s in scores]}}, fh)
""")


@pytest.mark.slow
def test_two_processes_split_and_merge_in_order(tiny_llama, tmp_path):
    model, tok = tiny_llama
    generic, _ = _write_layouts(tmp_path, QUESTIONS * 1 + SHOTS)
    script, out = tmp_path / "dist.py", tmp_path / "out.json"
    script.write_text(_DIST_SCRIPT.format(tests=os.path.dirname(os.path.dirname(__file__)),
                                          data=str(generic), out=str(out)))
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    proc = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(script)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world"] == 2
    expect = Scorer(model, tok, batch_tokens=64, progress=False).score(load_dataset(str(generic)))
    assert [r["id"] for r in result["rows"]] == [s.id for s in expect]
    got = [np.asarray(r["probs"]) for r in result["rows"]]
    assert max(float(np.abs(g - e).max()) for g, e in zip(got, _probs(expect))) < TOL
