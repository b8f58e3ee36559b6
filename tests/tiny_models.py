"""The tiny random Llama the fast tests use (a plain module: importable from any test directory,
unlike ``conftest``, whose name several directories share)."""

from __future__ import annotations

TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
"""The shape of ``tiny_llama`` (grouped-query attention and tied embeddings, like SmolLM2)."""


def make_tiny_llama(tokenizer, *, seed: int = 0, **overrides):
    """A seeded random ``LlamaForCausalLM`` sized to ``tokenizer``, eval mode, fp32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**TINY_LLAMA, **overrides},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32).eval()
