"""Ask an OpenAI-compatible server for the answer letter of each item, with its logprobs.

The server can be vLLM (``vllm serve``), llama.cpp (``llama-server``), llama-cpp-python
(``python -m llama_cpp.server``), TGI or a hosted API. For each item the script sends one
request for a single token (``max_tokens: 1``, ``temperature: 0``) with its top logprobs
and writes the item and the raw response as one JSON line, the input of
``first-eval import openai``.

Usage::

    python examples/query_openai.py --base-url http://localhost:8080/v1 --model NAME \\
        --data items.jsonl --out responses.jsonl \\
        [--endpoint chat|completions] [--top-logprobs 20] \\
        [--api-key-env OPENAI_API_KEY] [--limit N] [--min-tokens 1] [--timeout 120]

    first-eval import openai responses.jsonl --out preds.jsonl
    first-eval report --predictions preds.jsonl --out reports/my-model

``--data`` is anything :func:`first_eval.data.load_dataset` reads: a JSONL file in the
generic layout ``{"id", "question", "choices", "answer"}`` (``answer`` a 0-based index or a
letter), a CommonsenseQA/ARC-style file, or a built-in name such as ``countries``.
``--limit N`` keeps the first N items.

The requests (:func:`build_request`):

``--endpoint completions`` (``POST {base-url}/completions``)
    ``{"model", "prompt", "max_tokens": 1, "temperature": 0, "logprobs": K}`` with the
    toolkit's plain prompt (:func:`first_eval.prompts.plain_prompt`), which ends in
    ``Answer:`` so the letter comes as ``" A"``, ``" B"``, …
``--endpoint chat`` (default; ``POST {base-url}/chat/completions``)
    ``{"model", "messages", "max_tokens": 1, "temperature": 0, "logprobs": true,
    "top_logprobs": K}``; the one user message is :func:`first_eval.prompts.user_message`
    (question, lettered options, "Answer with the letter of the correct option."). The server
    applies the model's chat template; the line's ``prompt`` records the user message.

``--min-tokens 1`` adds ``"min_tokens": 1`` (vLLM and llama-cpp-python accept it; OpenAI's
API does not). Use it when the model's most likely first token is its end-of-sequence token:
servers drop that token, so the response then holds no token and no logprobs at all
(SmolLM2-135M-Instruct after the plain prompt's ``Answer:``, on llama-cpp-python).

Each output line is ``{"id", "question", "choices", "label", "prompt", "model", "response"}``
(plus ``subject``/``split`` when the item has them). The file is replaced atomically: the
lines go to a temporary file beside ``--out`` that is fsync-ed and renamed onto it, also when
the run stops early (a connection error, Ctrl-C), so what was answered is kept. Run the same
command again to resume: ids already in ``--out`` are skipped.

The API key, when the server needs one, is read from the environment variable named by
``--api-key-env`` (default ``OPENAI_API_KEY``) and sent as ``Authorization: Bearer …``; with
the variable unset no header is sent (local servers). A server that cannot be reached, or
answers with an HTTP error, stops the run with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from first_eval.data import load_dataset
from first_eval.errors import UserError
from first_eval.fileio import atomic_path
from first_eval.prompts import plain_prompt, user_message

ENDPOINTS = {"chat": "chat/completions", "completions": "completions"}


class QueryError(Exception):
    """A request that failed in a way the user must fix (the message is one line)."""


def build_request(item: Any, *, endpoint: str, model: str, top_logprobs: int = 20,
                  min_tokens: int | None = None) -> tuple[str, dict, str]:
    """The request for one item: ``(path below the base URL, JSON payload, prompt recorded)``.

    Parameters
    ----------
    item : Item
        Anything with ``question``, ``choices`` and ``label``.
    endpoint : {"chat", "completions"}
    model : str
        The ``model`` field of the request.
    top_logprobs : int, default=20
        How many top logprobs to ask for (OpenAI allows at most 20).
    min_tokens : int, optional
        Sent as ``min_tokens`` when given (vLLM and llama-cpp-python accept it, OpenAI does not):
        the server may not end the answer before that many tokens. A model whose most likely
        first token is its end-of-sequence token otherwise returns no token, and no logprobs.
    """
    if endpoint == "completions":
        prompt = plain_prompt(item)
        payload = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                   "logprobs": top_logprobs}
    elif endpoint == "chat":
        prompt = user_message(item)
        payload = {"model": model, "messages": [{"role": "user", "content": prompt}],
                   "max_tokens": 1, "temperature": 0, "logprobs": True,
                   "top_logprobs": top_logprobs}
    else:
        raise ValueError(f"Expected endpoint 'chat' or 'completions', got {endpoint!r}")
    if min_tokens is not None:
        payload["min_tokens"] = min_tokens
    return ENDPOINTS[endpoint], payload, prompt


def http_post(base_url: str, path: str, payload: dict, *, api_key: str | None = None,
              timeout: float = 120.0) -> dict:
    """POST ``payload`` as JSON to ``{base_url}/{path}``; the decoded JSON reply.

    Raises :class:`QueryError` (one line) when the server cannot be reached, answers with an
    HTTP error or with something that is not JSON.
    """
    url = f"{base_url.rstrip('/')}/{path}"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip().replace("\n", " ")
        raise QueryError(f"{url}: HTTP {exc.code} {exc.reason}: {detail[:300]}") from None
    except (urllib.error.URLError, OSError) as exc:  # refused, unknown host, timeout
        reason = getattr(exc, "reason", exc)
        raise QueryError(f"cannot reach {url} ({reason}); is the server running?") from None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise QueryError(f"{url}: the reply is not JSON: {body[:200]!r}") from None


def answered_ids(path: Path) -> set[str]:
    """Ids already written to ``path`` (empty when it does not exist)."""
    if not path.exists():
        return set()
    ids = set()
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                try:
                    ids.add(str(json.loads(raw)["id"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise QueryError(f"{path}:{lineno}: not a line this script wrote; "
                                     "move the file away to start afresh") from None
    return ids


def query_items(items: Sequence[Any], out: str | os.PathLike, *, endpoint: str, model: str,
                top_logprobs: int, send: Callable[[str, dict], dict], min_tokens: int | None = None,
                progress: Callable | None = None) -> tuple[int, int]:
    """Ask ``send(path, payload)`` about every item not yet in ``out``.

    Returns how many were asked, and how many of those responses hold no generated token
    (the model ended at once: see ``--min-tokens``).

    Existing lines of ``out`` are copied to a temporary file beside it and the new lines
    appended one by one; in the end the file is fsync-ed and renamed onto ``out``
    (:func:`first_eval.fileio.atomic_path`) — also when a request fails or the run is
    interrupted after some answers, before the exception goes on.
    """
    out = Path(out)
    done = answered_ids(out)
    todo = [item for item in items if str(item.id) not in done]
    asked, empty, stopped = 0, 0, None
    with atomic_path(out) as tmp:
        if out.exists():
            shutil.copyfile(out, tmp)
        with open(tmp, "a", encoding="utf-8") as fh:
            try:
                for item in progress(todo) if progress else todo:
                    path, payload, prompt = build_request(item, endpoint=endpoint, model=model,
                                                          top_logprobs=top_logprobs,
                                                          min_tokens=min_tokens)
                    response = send(path, payload)
                    if asked == 0 and not _has_logprobs(response):
                        raise QueryError("the server answered without logprobs "
                                         f"({json.dumps(response)[:200]}); does it support them?")
                    fh.write(json.dumps(_line(item, prompt, model, response), ensure_ascii=False) + "\n")
                    fh.flush()
                    asked += 1
                    empty += _no_token(response)
            except BaseException as exc:  # keep what was answered, then re-raise
                if not asked:
                    raise  # nothing new: atomic_path leaves ``out`` as it was
                stopped = exc
    if stopped is not None:
        raise stopped
    return asked, empty


def _has_logprobs(response: Any) -> bool:
    try:
        return response.get("error") is not None or response["choices"][0].get("logprobs") is not None
    except (AttributeError, KeyError, IndexError, TypeError):
        return False


def _no_token(response: Any) -> bool:
    """Whether a response's first choice holds logprobs for no generated token."""
    try:
        logprobs = response["choices"][0]["logprobs"]
        return len(logprobs["content"] if "content" in logprobs else logprobs["tokens"]) == 0
    except (KeyError, IndexError, TypeError):
        return False


def _line(item: Any, prompt: str, model: str, response: dict) -> dict:
    line = {"id": item.id, "question": item.question, "choices": list(item.choices),
            "label": item.label, "prompt": prompt, "model": model, "response": response}
    for extra in ("subject", "split"):
        if getattr(item, extra, ""):
            line[extra] = getattr(item, extra)
    return line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://localhost:8080/v1")
    parser.add_argument("--model", required=True, help="the model name the server knows")
    parser.add_argument("--data", required=True, help="items: a JSONL file or a built-in dataset name")
    parser.add_argument("--out", required=True, help="responses JSONL (resumed when it exists)")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="chat")
    parser.add_argument("--top-logprobs", type=int, default=20)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key (default OPENAI_API_KEY)")
    parser.add_argument("--min-tokens", type=int, default=None,
                        help="send min_tokens (vLLM, llama-cpp-python; not OpenAI) so that the model "
                             "cannot stop before its answer token")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    args = parser.parse_args(argv)
    if args.top_logprobs < 1:
        parser.error("--top-logprobs must be at least 1")
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be non-negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = os.environ.get(args.api_key_env) or None
    try:
        items = load_dataset(args.data)
        if args.limit is not None:
            items = items[: args.limit]
        from tqdm import tqdm

        asked, empty = query_items(
            items, args.out, endpoint=args.endpoint, model=args.model,
            top_logprobs=args.top_logprobs, min_tokens=args.min_tokens,
            send=lambda path, payload: http_post(args.base_url, path, payload, api_key=api_key,
                                                 timeout=args.timeout),
            progress=lambda todo: tqdm(todo, desc=f"{args.endpoint} {args.model}", unit="item"),
        )
    except (QueryError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; the answers so far are in {args.out}", file=sys.stderr)
        return 130
    print(f"{args.out}: {asked} new item(s), {len(items) - asked} already there", file=sys.stderr)
    if empty:
        print(f"warning: {empty} response(s) hold no generated token (the model ended at once), "
              "so `first-eval import openai` will reject them; if the server accepts it, remove "
              "those lines and rerun with --min-tokens 1", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
