"""``first_eval.imports.openai``: OpenAI-compatible responses → predictions rows.

The recorded files under ``tests/fixtures/openai/`` (see its README) are checked against a
brute-force re-reading of their raw logprobs; small hand-made lines pin each part of the rule
and each error. The example script's request building and resume run without a server.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import math
import re
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from first_eval.errors import UserError
from first_eval.imports import ImportResult
from first_eval.imports.openai import READING, letter_probabilities, read_openai
from first_eval.predictions import validate_frame

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "openai"
RECORDED = ["chat_smollm2.jsonl", "completions_smollm2.jsonl", "completions_top20_smollm2.jsonl"]


# --------------------------------------------------------------------------- brute force
def _brute_force(line: dict) -> tuple[list[float], float, int]:
    """The rule of the module docstring, re-done with plain loops from the raw response."""
    n = len(line["choices"]) if "choices" in line else len(line["letters"])
    letters = "ABCDEFGHIJ"[:n]
    logprobs = line["response"]["choices"][0]["logprobs"]
    if "content" in logprobs:
        steps = [(e["token"], [(t["token"], t["logprob"]) for t in e["top_logprobs"]])
                 for e in logprobs["content"]]
    else:
        steps = [(tok, list(top.items())) for tok, top in zip(logprobs["tokens"], logprobs["top_logprobs"])]
    answer = next((s for s in steps if s[0].strip() != ""), steps[0])
    top = answer[1]
    listed = [math.exp(lp) for _, lp in top]
    floor = min(listed)
    found = {letter: 0.0 for letter in letters}
    seen = set()
    mass = 0.0
    for (token, _), p in zip(top, listed):
        for letter in letters:
            if token.strip() == letter:
                found[letter] += p
                seen.add(letter)
                mass += p
    raw = [found[letter] if letter in seen else floor for letter in letters]
    total = sum(raw)
    return [r / total for r in raw], mass, n - len(seen)


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_the_recorded_files_are_there():
    for name in [*RECORDED, "completions_no_min_tokens_smollm2.jsonl", "README.md"]:
        assert (FIXTURES / name).is_file(), name
        assert (FIXTURES / name).stat().st_size < 200_000


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_responses_follow_the_rule(name):
    path = FIXTURES / name
    lines = _read_lines(path)
    result = read_openai(path)
    assert isinstance(result, ImportResult)
    frame = validate_frame(result.frame, source=name)  # what write_predictions will check
    assert len(frame) == len(lines) == 24
    touched = 0
    for line, row in zip(lines, frame.to_dict("records")):
        probs, mass, imputed = _brute_force(line)
        assert row["id"] == line["id"]
        assert row["label"] == line["label"]
        np.testing.assert_allclose(row["probs"], probs, rtol=0, atol=1e-12)
        assert abs(sum(row["probs"]) - 1) < 1e-12
        assert row["option_mass"] == pytest.approx(mass, abs=1e-12)
        assert row["imputed_letters"] == imputed
        assert row["reading"] == READING
        assert row["prompt"] == line["prompt"]
        assert row["model"] == line["model"] == "SmolLM2-135M-Instruct-Q4_1"
        assert row["dataset"] == path.stem
        assert row["subject"] == line["subject"]
        touched += imputed > 0
    assert touched > 0  # the recordings asked for few top logprobs on purpose
    note = next(n for n in result.notes if "outside the answer token's" in n)
    assert note.startswith(f"{touched} of {len(lines)} items had option letters outside")


def test_recorded_chat_has_both_complete_and_imputed_items():
    frame = read_openai(FIXTURES / "chat_smollm2.jsonl").frame
    assert list(frame["imputed_letters"]).count(0) == 5  # all four letters in the top 4
    assert list(frame["imputed_letters"]).count(1) == 19  # "The" took one of the four places
    # The chat answer token has no leading space.
    line = _read_lines(FIXTURES / "chat_smollm2.jsonl")[0]
    tops = [t["token"] for t in line["response"]["choices"][0]["logprobs"]["content"][0]["top_logprobs"]]
    assert "A" in tops and " A" not in tops


def test_recorded_completions_read_space_letters_and_whitespace_answers():
    result = read_openai(FIXTURES / "completions_smollm2.jsonl")
    lines = _read_lines(FIXTURES / "completions_smollm2.jsonl")
    tops = [line["response"]["choices"][0]["logprobs"]["top_logprobs"][0] for line in lines]
    assert all(" A" in t and "A" not in t for t in tops if " A" in t)
    newline = sum(line["response"]["choices"][0]["logprobs"]["tokens"] == ["\n"] for line in lines)
    assert newline == 11
    assert f"{newline} of 24 items generated only whitespace; their first generated token's top " \
        "logprobs were read" in result.notes
    # Only " A" of the letters is in these top-5 lists: B, C and D share the floor.
    frame = result.frame
    assert (frame["imputed_letters"] == 3).all()
    for probs in frame["probs"]:
        assert probs[1] == probs[2] == probs[3] <= probs[0]


def test_recorded_top20_with_a_collided_key_still_follows_the_rule():
    lines = _read_lines(FIXTURES / "completions_top20_smollm2.jsonl")
    sizes = [len(line["response"]["choices"][0]["logprobs"]["top_logprobs"][0]) for line in lines]
    assert sorted(set(sizes)) == [19, 20]  # llama-cpp-python keys by decoded text
    result = read_openai(FIXTURES / "completions_top20_smollm2.jsonl")
    assert any("top-19 to top-20 logprobs" in n for n in result.notes)


def test_recorded_response_without_a_token_is_an_error():
    path = FIXTURES / "completions_no_min_tokens_smollm2.jsonl"
    with pytest.raises(UserError, match=re.escape(f"{path}:1: the response has no generated token "
                                                  "(finish_reason 'stop': the model ended at once; "
                                                  "where the server accepts it, request `min_tokens: 1`)")):
        read_openai(path)


def test_recorded_chat_and_completions_cover_the_same_items():
    chat = read_openai(FIXTURES / "chat_smollm2.jsonl")
    comp = read_openai(FIXTURES / "completions_smollm2.jsonl")
    assert list(chat.frame["id"]) == list(comp.frame["id"])
    assert list(chat.frame["label"]) == list(comp.frame["label"])
    assert chat.notes[0] == "read 24 item(s) from 24 chat-completions response(s)"
    assert comp.notes[0] == "read 24 item(s) from 24 completions response(s)"
    items = _read_lines(FIXTURES / "countries_test24.jsonl")
    assert [x["id"] for x in items] == list(chat.frame["id"])
    assert [x["answer"] for x in items] == list(chat.frame["label"])


# --------------------------------------------------------------------------- hand-made lines
def _chat_response(tops, tokens=None, model="srv-model"):
    """A chat-completions body; ``tops`` is one list of (token, prob) per generated token."""
    tokens = tokens or [max(t, key=lambda x: x[1])[0] for t in tops]
    content = [{"token": tok, "logprob": math.log(dict(top).get(tok, 1e-9)), "bytes": list(tok.encode()),
                "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
                                 for t, p in top]}
               for tok, top in zip(tokens, tops)]
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens)},
                         "logprobs": {"content": content, "refusal": None}, "finish_reason": "length"}]}


def _completion_response(tops, tokens=None, model="srv-model"):
    tokens = tokens or [max(t, key=lambda x: x[1])[0] for t in tops]
    return {"id": "cmpl-1", "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": "".join(tokens), "finish_reason": "length",
                         "logprobs": {"tokens": tokens,
                                      "token_logprobs": [math.log(dict(t).get(k, 1e-9)) for k, t in zip(tokens, tops)],
                                      "top_logprobs": [{t: math.log(p) for t, p in top} for top in tops],
                                      "text_offset": list(range(len(tokens)))}}]}


def _line(response, **fields):
    line = {"id": "q1", "question": "?", "choices": ["w", "x", "y", "z"], "label": 1, "response": response}
    line.update(fields)
    return {k: v for k, v in line.items() if v is not None}


def _write(tmp_path, *lines, name="items.jsonl"):
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _one(tmp_path, line, **kwargs):
    return read_openai(_write(tmp_path, line), **kwargs).frame.iloc[0]


@pytest.mark.parametrize("make", [_chat_response, _completion_response])
def test_space_and_no_space_letters_add(tmp_path, make):
    top = [(" B", 0.4), ("B", 0.2), (" A", 0.1), ("C", 0.1), ("D", 0.05), ("\n", 0.15)]
    row = _one(tmp_path, _line(make([top])))
    np.testing.assert_allclose(row["probs"], np.array([0.1, 0.6, 0.1, 0.05]) / 0.85, atol=1e-12)
    assert row["option_mass"] == pytest.approx(0.85)
    assert row["imputed_letters"] == 0
    assert bool(row["top1_correct"]) is True


def test_a_missing_letter_gets_the_smallest_listed_probability(tmp_path):
    top = [("A", 0.5), ("B", 0.3), ("foo", 0.02), ("C", 0.1)]
    result = read_openai(_write(tmp_path, _line(_chat_response([top]))))
    row = result.frame.iloc[0]
    np.testing.assert_allclose(row["probs"], np.array([0.5, 0.3, 0.1, 0.02]) / 0.92, atol=1e-12)
    assert row["option_mass"] == pytest.approx(0.9)
    assert row["imputed_letters"] == 1
    assert bool(row["top1_correct"]) is False  # top-1 is "A", the label is B
    assert ("1 of 1 items had option letters outside the answer token's top-4 logprobs; each missing "
            "letter got the smallest listed probability (an upper bound), then the letters were "
            "renormalized") in result.notes


@pytest.mark.parametrize("make", [_chat_response, _completion_response])
def test_no_letter_listed_is_uniform(tmp_path, make):
    row = _one(tmp_path, _line(make([[("The", 0.6), ("I", 0.3), ("Paris", 0.05)]])))
    assert row["probs"] == [0.25] * 4
    assert row["option_mass"] == 0.0
    assert row["imputed_letters"] == 4
    assert bool(row["top1_correct"]) is False


def test_letters_beyond_n_options_do_not_count(tmp_path):
    top = [("A", 0.5), ("E", 0.3), ("B", 0.1), ("AB", 0.05)]
    row = _one(tmp_path, _line(_chat_response([top]), choices=["x", "y"]))
    np.testing.assert_allclose(row["probs"], [0.5 / 0.6, 0.1 / 0.6], atol=1e-12)
    assert row["option_mass"] == pytest.approx(0.6)
    assert row["n_options"] == 2


def test_label_as_letter_or_index_and_letters_instead_of_choices(tmp_path):
    top = [("A", 0.5), ("B", 0.3), ("C", 0.1), ("D", 0.1)]
    by_index = _one(tmp_path, _line(_chat_response([top]), label=2))
    by_letter = _one(tmp_path, _line(_chat_response([top]), label="C"))
    lowercase = _one(tmp_path, _line(_chat_response([top]), label=" c"))
    letters = _one(tmp_path, _line(_chat_response([top]), choices=None, letters=list("ABCD"), label="C"))
    for row in (by_index, by_letter, lowercase, letters):
        assert row["label"] == 2
        np.testing.assert_allclose(row["probs"], [0.5, 0.3, 0.1, 0.1], atol=1e-12)


def test_the_answer_token_is_the_first_non_whitespace_one(tmp_path):
    tops = [[("\n", 0.7), (" ", 0.2), ("A", 0.1)], [("B", 0.6), ("A", 0.2), ("C", 0.1), ("D", 0.1)]]
    row = _one(tmp_path, _line(_chat_response(tops, tokens=["\n", "B"])))
    np.testing.assert_allclose(row["probs"], [0.2, 0.6, 0.1, 0.1], atol=1e-12)
    comp = _one(tmp_path, _line(_completion_response(tops, tokens=["\n", "B"])))
    np.testing.assert_allclose(comp["probs"], [0.2, 0.6, 0.1, 0.1], atol=1e-12)


def test_only_whitespace_generated_reads_the_first_token_and_says_so(tmp_path):
    tops = [[("\n", 0.7), (" A", 0.2), (" B", 0.1)], [("\n", 0.9), ("A", 0.1)]]
    result = read_openai(_write(tmp_path, _line(_chat_response(tops, tokens=["\n", "\n"]))))
    np.testing.assert_allclose(result.frame.iloc[0]["probs"], [0.2 / 0.5, 0.1 / 0.5, 0.1 / 0.5, 0.1 / 0.5])
    assert any("1 of 1 items generated only whitespace" in n for n in result.notes)


def test_minus_9999_logprobs_are_zero_and_an_all_zero_item_is_uniform(tmp_path):
    response = _chat_response([[("A", 0.9), ("B", 0.1)]])
    response["choices"][0]["logprobs"]["content"][0]["top_logprobs"] = [
        {"token": "A", "logprob": -9999.0, "bytes": None}, {"token": "B", "logprob": -9999.0, "bytes": None}]
    row = _one(tmp_path, _line(response, choices=["x", "y"]))
    assert row["probs"] == [0.5, 0.5]


def test_model_and_dataset_precedence(tmp_path):
    top = [[("A", 0.9), ("B", 0.1)]]
    path = _write(tmp_path, _line(_chat_response(top, model="from-response"), id="a"),
                  _line(_chat_response(top, model="from-response"), id="b", model="from-line",
                        dataset="from-line-ds"), name="my-run.jsonl")
    frame = read_openai(path).frame
    assert list(frame["model"]) == ["from-response", "from-line"]
    assert list(frame["dataset"]) == ["my-run", "from-line-ds"]
    frame = read_openai(path, model="arg", dataset="arg-ds").frame
    assert list(frame["model"]) == ["arg", "arg"]
    assert list(frame["dataset"]) == ["arg-ds", "arg-ds"]
    assert "prompt" not in frame.columns


def test_response_given_as_a_json_string(tmp_path):
    row = _one(tmp_path, _line(json.dumps(_chat_response([[("B", 0.9), ("A", 0.1)]])), choices=["x", "y"]))
    np.testing.assert_allclose(row["probs"], [0.1, 0.9], atol=1e-12)


# --------------------------------------------------------------------------- errors
GOOD = [("A", 0.5), ("B", 0.3), ("C", 0.1), ("D", 0.1)]


def _no_logprobs():
    response = _chat_response([GOOD])
    response["choices"][0]["logprobs"] = None
    return response


def _empty_content():
    response = _chat_response([GOOD])
    response["choices"][0]["logprobs"]["content"] = []
    return response


def _no_top_logprobs():
    response = _completion_response([GOOD])
    response["choices"][0]["logprobs"]["top_logprobs"] = [None]
    return response


@pytest.mark.parametrize("bad, message", [
    ('{"id": "q2", "label": 1,', r"malformed JSON"),
    (_line(_chat_response([GOOD]), id=None), r"missing field 'id'"),
    (_line(_chat_response([GOOD]), label=None), r"missing field 'label'"),
    (_line(None), r"missing field 'response'"),
    (_line(_no_logprobs()), r"the response has no logprobs; request them with `logprobs: true, top_logprobs: 20` "
                            r"\(chat completions\) or `logprobs: 20` \(completions\)"),
    (_line(_empty_content()), r"the response has no generated token"),
    (_line(_no_top_logprobs()), r"the answer token has no top logprobs; request them"),
    (_line(_chat_response([GOOD]), label=4), r"label 4 out of range for 4 options"),
    (_line(_chat_response([GOOD]), label="E"), r"label 'E' out of range for 4 options"),
    (_line(_chat_response([GOOD]), label="maybe"), r"expected 'label' to be an index or a letter"),
    (_line({"error": {"message": "model not found", "type": "invalid_request_error"}}),
     r"the response is an error: model not found"),
    (_line(_chat_response([GOOD]), choices=["only one"], label=0), r"fewer than 2 options"),
    (_line(_chat_response([GOOD]), choices=None), r"missing field 'choices'"),
    (_line(_chat_response([GOOD]), choices=None, letters=["A", "C"], label=0), r"expected 'letters'"),
    (_line(_chat_response([GOOD]), id="q0"), r"duplicate item id 'q0' \(first at line 1\)"),
    (_line({"id": "x", "choices": []}), r"the response has no 'choices'"),
])
def test_errors_name_the_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path, _line(_chat_response([GOOD]), id="q0"), bad)
    with pytest.raises(UserError, match=re.escape(f"{path}:2: ") + message) as info:
        read_openai(path)
    assert "\n" not in str(info.value)


def test_no_model_name_anywhere(tmp_path):
    response = _chat_response([GOOD])
    del response["model"]
    path = _write(tmp_path, _line(response))
    with pytest.raises(UserError, match=re.escape(f"{path}:1: no model name")):
        read_openai(path)
    assert read_openai(path, model="m").frame.iloc[0]["model"] == "m"


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match=re.escape(f"{empty}: no responses (the file is empty)")):
        read_openai(empty)
    with pytest.raises(UserError, match="no such file"):
        read_openai(tmp_path / "nope.jsonl")


def test_letter_probabilities_matches_brute_force_on_random_tops():
    rng = np.random.default_rng(0)
    vocab = ["A", " A", "B", " B", "C", " C", "D", "E", "x", "\n", " ", "AB"]
    for _ in range(200):
        k = int(rng.integers(1, len(vocab) + 1))
        tokens = list(rng.choice(vocab, size=k, replace=False))
        logprobs = np.log(rng.dirichlet(np.ones(k + 1))[:k])
        n = int(rng.integers(2, 6))
        line = {"choices": ["?"] * n, "response": _chat_response([list(zip(tokens, np.exp(logprobs)))],
                                                                 tokens=[tokens[0]])}
        want, mass, imputed = _brute_force(line)
        got, got_mass, got_imputed, _ = letter_probabilities(list(zip(tokens, logprobs.tolist())), n)
        np.testing.assert_allclose(got, want, atol=1e-12)
        assert abs(sum(got) - 1) < 1e-12
        assert got_mass == pytest.approx(mass, abs=1e-12)
        assert got_imputed == imputed


# --------------------------------------------------------------------------- the example script
@pytest.fixture(scope="module")
def query():
    spec = importlib.util.spec_from_file_location("query_openai", ROOT / "examples" / "query_openai.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["query_openai"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("query_openai", None)


ITEM = SimpleNamespace(id="q1", question="What is the capital of France?", choices=("Lyon", "Paris"),
                       label=1, subject="capital", split="test")


def test_request_payloads(query):
    path, payload, prompt = query.build_request(ITEM, endpoint="completions", model="m", top_logprobs=5)
    assert path == "completions"
    assert payload == {"model": "m", "prompt": "Question: What is the capital of France?\nA. Lyon\nB. Paris\nAnswer:",
                       "max_tokens": 1, "temperature": 0, "logprobs": 5}
    assert prompt == payload["prompt"]
    path, payload, prompt = query.build_request(ITEM, endpoint="chat", model="m")
    assert path == "chat/completions"
    user = "What is the capital of France?\nA. Lyon\nB. Paris\nAnswer with the letter of the correct option."
    assert payload == {"model": "m", "messages": [{"role": "user", "content": user}], "max_tokens": 1,
                       "temperature": 0, "logprobs": True, "top_logprobs": 20}
    assert prompt == user
    _, payload, _ = query.build_request(ITEM, endpoint="completions", model="m", min_tokens=1)
    assert payload["min_tokens"] == 1 and payload["logprobs"] == 20
    with pytest.raises(ValueError):
        query.build_request(ITEM, endpoint="embeddings", model="m")


def _items(n):
    return [SimpleNamespace(id=f"q{i}", question=f"Q{i}?", choices=("a", "b"), label=i % 2, subject="", split="")
            for i in range(n)]


def test_query_items_writes_lines_the_importer_reads_and_resumes(query, tmp_path):
    out = tmp_path / "responses.jsonl"
    sent = []

    def send(path, payload):
        sent.append(payload)
        return _chat_response([[("B", 0.7), ("A", 0.3)]])

    assert query.query_items(_items(3), out, endpoint="chat", model="m", top_logprobs=5, send=send) == (3, 0)
    lines = _read_lines(out)
    assert [x["id"] for x in lines] == ["q0", "q1", "q2"]
    assert set(lines[0]) == {"id", "question", "choices", "label", "prompt", "model", "response"}
    assert query.query_items(_items(5), out, endpoint="chat", model="m", top_logprobs=5, send=send) == (2, 0)
    assert len(sent) == 5
    frame = read_openai(out).frame
    assert list(frame["id"]) == [f"q{i}" for i in range(5)]
    assert list(frame["label"]) == [0, 1, 0, 1, 0]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failure_mid_run_keeps_the_answers_so_far(query, tmp_path):
    out = tmp_path / "responses.jsonl"
    calls = []

    def send(path, payload):
        calls.append(path)
        if len(calls) == 3:
            raise query.QueryError("cannot reach http://x/v1/chat/completions (refused)")
        return _chat_response([[("A", 0.7), ("B", 0.3)]])

    with pytest.raises(query.QueryError):
        query.query_items(_items(5), out, endpoint="chat", model="m", top_logprobs=5, send=send)
    assert [x["id"] for x in _read_lines(out)] == ["q0", "q1"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unreachable_server_is_one_line_and_exit_2(query, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = _write(tmp_path, {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4"], "answer": 1},
                  name="data.jsonl")
    out = tmp_path / "out.jsonl"
    code = query.main(["--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--data", str(data),
                       "--out", str(out), "--timeout", "5"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot reach http://127.0.0.1:{port}/v1/chat/completions")
    assert not out.exists()


@pytest.fixture
def fake_server():
    """A local HTTP server answering every POST with ``state["reply"]`` (status, JSON body)."""
    state = {"requests": [], "reply": (200, _chat_response([[("B", 0.6), ("A", 0.4)]]))}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["requests"].append((self.path, dict(self.headers), json.loads(body)))
            status, reply = state["reply"]
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def test_main_over_http_with_an_api_key(query, fake_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MY_KEY", "sk-test")
    out = tmp_path / "out.jsonl"
    args = ["--base-url", fake_server["url"] + "/", "--model", "m", "--data",
            str(FIXTURES / "countries_test24.jsonl"), "--out", str(out), "--limit", "3",
            "--top-logprobs", "7", "--api-key-env", "MY_KEY"]
    assert query.main(args) == 0
    path, headers, body = fake_server["requests"][0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["top_logprobs"] == 7 and body["logprobs"] is True and body["max_tokens"] == 1
    assert len(read_openai(out).frame) == 3
    assert query.main(args) == 0  # resumed: nothing left to ask
    assert len(fake_server["requests"]) == 3
    assert "0 new item(s), 3 already there" in capsys.readouterr().err


def test_main_warns_about_responses_without_a_token(query, fake_server, tmp_path, capsys):
    fake_server["reply"] = (200, _read_lines(FIXTURES / "completions_no_min_tokens_smollm2.jsonl")[0]["response"])
    out = tmp_path / "out.jsonl"
    assert query.main(["--base-url", fake_server["url"], "--model", "m", "--data",
                       str(FIXTURES / "countries_test24.jsonl"), "--out", str(out), "--limit", "2",
                       "--endpoint", "completions"]) == 0
    assert "warning: 2 response(s) hold no generated token" in capsys.readouterr().err


def test_main_stops_on_an_http_error(query, fake_server, tmp_path, capsys):
    fake_server["reply"] = (400, {"error": {"message": "top_logprobs must be <= 20"}})
    out = tmp_path / "out.jsonl"
    assert query.main(["--base-url", fake_server["url"], "--model", "m", "--data",
                       str(FIXTURES / "countries_test24.jsonl"), "--out", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {fake_server['url']}/chat/completions: HTTP 400")
    assert "top_logprobs must be <= 20" in last
    assert not out.exists()


def test_cli_import_openai_then_report(tmp_path):
    """`first-eval import openai` on the recorded chat responses, then a report from them."""
    import subprocess

    out = tmp_path / "preds.jsonl"
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", "import", "openai", str(FIXTURES / "chat_smollm2.jsonl"),
                           "--out", str(out), "--dataset", "countries-chat"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 24 predictions" in proc.stdout and "19 of 24 items" in proc.stderr
    from first_eval.predictions import read_predictions

    frame = read_predictions(out)
    assert set(frame["dataset"]) == {"countries-chat"} and (frame["imputed_letters"] >= 0).all()
    rep = subprocess.run([sys.executable, "-m", "first_eval.cli", "report", "--predictions", str(out), "--out",
                          str(tmp_path / "r"), "--bootstrap", "50"], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    assert "countries-chat (24 items)" in (tmp_path / "r" / "report.md").read_text()


def test_cli_import_openai_bad_file_is_one_line_and_nothing_written(tmp_path):
    import subprocess

    bad = tmp_path / "r.jsonl"
    bad.write_text('{"id": "a", "choices": ["x", "y"], "label": 0}\n')
    out = tmp_path / "p.jsonl"
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", "import", "openai", str(bad), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert f"{bad}:1" in proc.stderr and not out.exists()
