"""``first-eval knowledge`` — the concentrated-knowledge study for any model and data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def knowledge(
    model: Annotated[str, typer.Option("--model", help="Model spec (smollm2-135m, a checkpoint dir, …).",
                                       show_default=False)],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name or JSONL path.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output directory (knowledge.json, knowledge.html).",
                                      show_default=False)],
    split: Annotated[Optional[str], typer.Option("--split", help="Split (default: the dataset's default).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Items to read.")] = 200,
    max_k: Annotated[int, typer.Option("--max-k", min=1, max=1000, help="Largest k.")] = 20,
    template: Annotated[str, typer.Option("--template", help="Prompt template: plain or chat.")] = "plain",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the item subset.")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """How much next-token mass sits in a model's top k tokens (mass@k, KL vs k, bytes vs k).

    Example: first-eval knowledge --model smollm2-135m --dataset countries --out reports/knowledge
    """
    from first_eval.data import LETTERS, load_dataset
    from first_eval.fileio import write_json_atomic, write_text_atomic
    from first_eval.knowledge import collect_topk, summarize
    from first_eval.plots import kl_bytes_figure, knowledge_summaries, mass_at_k_figure, mass_distribution_figure
    from first_eval.prompts import build_prompt, letter_prefix
    from first_eval.zoo import load_model

    items = load_dataset(dataset, split=split, limit=limit, seed=seed)
    net, tok = load_model(model)
    texts, starts = [], []
    for it in items:
        prompt = build_prompt(it, template, tokenizer=tok)
        starts.append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
        texts.append(prompt + letter_prefix(template) + LETTERS[it.label])
    resp, everywhere = collect_topk(net, tok, texts, starts, max_k=max_k, progress=progress)
    doc = {"models": [{"model": model, "dataset": dataset, "split": split, "n_items": len(items),
                       "summaries": [summarize(resp, positions="response"), summarize(everywhere, positions="all")]}]}
    write_json_atomic(out / "knowledge.json", doc)
    summaries = knowledge_summaries(doc)
    figs = [mass_at_k_figure(summaries), mass_distribution_figure(summaries), kl_bytes_figure(summaries)]
    page = "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs))
    write_text_atomic(out / "knowledge.html", f"<!doctype html><html><meta charset='utf-8'><body>{page}</body></html>")
    for s in doc["models"][0]["summaries"]:
        m = s["mass_mean"]
        typer.echo(f"{s['positions']:>8} positions (n={s['n_positions']}): mass@1 {m[0]:.3f}"
                   + (f", mass@5 {m[4]:.3f}, share > 0.95: {s['share_mass_over_0_95'][4]:.0%}" if len(m) >= 5 else ""))
    typer.echo(f"wrote {out / 'knowledge.json'} and {out / 'knowledge.html'}")


def register(app: typer.Typer) -> None:
    app.command("knowledge")(knowledge)
