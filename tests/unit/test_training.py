"""``workers.training`` on a tiny Llama and a tiny in-test chat dataset.

Checked against the spec: the documented chat format (UTF-8 bytes, loss on the
assistant answers only), losses recomputed by hand, seeded determinism, and
``init_adapter`` starting from the parent's weights.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.support.tiny import TINY_LLAMA, tiny_llama
from workers.errors import JobInputError
from workers.training import (
    ByteTokenizer,
    ChatExample,
    TrainSettings,
    default_target_modules,
    encode_example,
    evaluate_loss,
    load_tokenizer,
    parse_chat_record,
    read_chat_jsonl,
    split_examples,
    train_lora,
)

VOCAB = TINY_LLAMA["vocab_size"]
CHATS = [
    ChatExample("Be brief.", (("2+2?", "4"),)),
    ChatExample(None, (("capital of France?", "Paris"),)),
    ChatExample(None, (("fever", "rest"), ("cough", "a doctor"))),
    ChatExample("Greet.", (("hello", "hi, how can I help?"),)),
]
CPU = torch.device("cpu")


def settings(**overrides) -> TrainSettings:
    """Tiny, fast settings: one batch holds the whole dataset."""
    base = dict(steps=8, lr=1e-2, seed=0, max_length=64, batch_size=4, eval_fraction=0.0)
    return TrainSettings(**{**base, **overrides})


def lora_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def manual_loss(model, chats: list[ChatExample]) -> float:
    """Token-mean CE over assistant answers (+ their newline), built from the documented format."""
    total = count = 0.0
    for chat in chats:
        parts = [(f"{chat.system}\n\n", False)] if chat.system else []
        for human, answer in chat.turns:
            parts += [(f"Human: {human}\nAssistant: ", False), (answer + "\n", True)]
        ids, trained = [], []
        for text, is_answer in parts:
            ids += [b % VOCAB for b in text.encode()]
            trained += [is_answer] * len(text.encode())
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1]
        losses = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
        mask = torch.tensor(trained[1:])
        total += float(losses[mask].sum())
        count += int(mask.sum())
    return total / count


# ------------------------------------------------------------------ data and format


def test_byte_tokenizer_maps_utf8_bytes_mod_vocab():
    tok = ByteTokenizer(100)
    assert tok.encode("aé") == [b % 100 for b in "aé".encode()]
    assert all(0 <= i < 100 for i in tok.encode("ünïcødé ✓"))


def test_loss_covers_the_assistant_answers_only():
    tok = ByteTokenizer(256)  # identity on bytes: labels decode back to text
    encoded = encode_example(CHATS[2], tok, max_length=1024)
    assert bytes(encoded.input_ids).decode() == (
        "Human: fever\nAssistant: rest\nHuman: cough\nAssistant: a doctor\n"
    )
    trained = bytes(t for t in encoded.labels if t != -100).decode()
    assert trained == "rest\na doctor\n"
    system = encode_example(CHATS[0], tok, max_length=1024)
    assert bytes(system.input_ids).decode().startswith("Be brief.\n\nHuman: 2+2?")


def test_truncation_and_examples_without_answer_tokens():
    tok = ByteTokenizer(VOCAB)
    prompt_len = len("Human: capital of France?\nAssistant: ")
    assert encode_example(CHATS[1], tok, max_length=prompt_len) is None
    cut = encode_example(CHATS[1], tok, max_length=prompt_len + 2)
    assert len(cut.input_ids) == prompt_len + 2 and cut.target_tokens == 2
    with pytest.raises(JobInputError, match="max_length"):
        train_lora(tiny_llama(), CHATS[1:2], tok, settings(max_length=prompt_len))


def test_read_chat_jsonl_and_bad_records(tmp_path):
    path = tmp_path / "a.jsonl"
    records = [{"system": "s", "conversation": [{"human": "h", "assistant": "a"}]}]
    path.write_text(json.dumps(records[0]) + "\n\n")
    assert read_chat_jsonl([path]) == [ChatExample("s", (("h", "a"),))]
    with pytest.raises(JobInputError, match="conversation"):
        parse_chat_record({"conversation": []}, "line 1")
    with pytest.raises(JobInputError, match=r"conversation\[0\].*assistant"):
        parse_chat_record({"conversation": [{"human": "h"}]}, "line 1")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(JobInputError, match="no records"):
        read_chat_jsonl([tmp_path / "empty.jsonl"])


def test_split_is_seeded_and_falls_back_to_the_train_set():
    items = [encode_example(c, ByteTokenizer(VOCAB), 64) for c in CHATS * 5]
    train, held, split = split_examples(items, 0.25, seed=3)
    assert split == "held-out" and (len(train), len(held)) == (15, 5)
    assert split_examples(items, 0.25, seed=3) == (train, held, split)
    assert split_examples(items, 0.25, seed=4)[1] != held
    assert split_examples(items[:3], 0.25, seed=3) == (items[:3], items[:3], "train")
    assert split_examples(items, 0.0, seed=3)[2] == "train"


def test_default_targets_are_the_attention_projections():
    assert default_target_modules(tiny_llama()) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    with pytest.raises(JobInputError, match="target_modules"):
        default_target_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_tokenizer_fallback_without_tokenizer_files(tmp_path):
    tok = load_tokenizer(tmp_path, VOCAB)
    assert isinstance(tok, ByteTokenizer) and "byte-level" in tok.description


def test_evaluate_loss_is_the_token_mean_and_ignores_padding():
    model = tiny_llama()
    encoded = [encode_example(c, ByteTokenizer(VOCAB), 64) for c in CHATS]
    expected = manual_loss(model, CHATS)
    for batch_size in (1, 3, 4):  # padding inside batches must not change the result
        loss = evaluate_loss(model, encoded, batch_size=batch_size, pad_id=0, device=CPU)
        assert loss == pytest.approx(expected, rel=1e-5)


# -------------------------------------------------------------------------- training


def test_training_lowers_the_loss_and_reports_metrics():
    base_loss = manual_loss(tiny_llama(), CHATS)
    model, report = train_lora(tiny_llama(), CHATS, ByteTokenizer(VOCAB), settings(steps=12))
    assert report.steps == 12 and len(report.train_losses) == 12
    assert report.train_losses[-1] < report.train_losses[0]
    assert report.eval_loss_before == pytest.approx(base_loss, rel=1e-5)  # B = 0 at start
    assert report.eval_loss == pytest.approx(manual_loss(model, CHATS), rel=1e-5)
    assert report.eval_loss < base_loss
    assert report.perplexity == pytest.approx(torch.tensor(report.eval_loss).exp().item())
    assert (report.r, report.lora_alpha, report.eval_split) == (4, 8.0, "train")
    assert report.parameter_count == sum(v.numel() for v in lora_state(model).values())
    assert report.precision == "fp32"


def test_steps_follow_epochs_when_no_steps_given():
    _, report = train_lora(
        tiny_llama(), CHATS * 2, ByteTokenizer(VOCAB), settings(steps=None, epochs=2, batch_size=3)
    )
    assert report.steps == 2 * 3  # ceil(8 / 3) batches per epoch


def test_training_is_deterministic_with_a_seed():
    tok = ByteTokenizer(VOCAB)
    run = dict(steps=3, batch_size=2, eval_fraction=0.25)
    m1, r1 = train_lora(tiny_llama(), CHATS * 2, tok, settings(seed=5, **run))
    m2, r2 = train_lora(tiny_llama(), CHATS * 2, tok, settings(seed=5, **run))
    m3, r3 = train_lora(tiny_llama(), CHATS * 2, tok, settings(seed=6, **run))
    assert r1.train_losses == r2.train_losses and r1.eval_loss == r2.eval_loss
    s1, s2, s3 = lora_state(m1), lora_state(m2), lora_state(m3)
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)


def test_continue_from_starts_from_the_parents_weights(tmp_path):
    tok = ByteTokenizer(VOCAB)
    parent, parent_report = train_lora(tiny_llama(), CHATS, tok, settings(r=2, lora_alpha=6))
    parent.save_pretrained(str(tmp_path / "parent"))
    parent_weights = lora_state(parent)

    # a negligible learning rate: one step leaves the parent's weights in place
    child, report = train_lora(
        tiny_llama(), CHATS, tok, settings(steps=1, lr=1e-12), init_adapter=tmp_path / "parent"
    )
    assert report.eval_loss_before == pytest.approx(parent_report.eval_loss, rel=1e-5)
    assert (report.r, report.lora_alpha) == (2, 6.0)  # the parent's, not the settings'
    child_weights = lora_state(child)
    assert child_weights.keys() == parent_weights.keys()
    for key, value in parent_weights.items():
        torch.testing.assert_close(child_weights[key], value, atol=1e-8, rtol=0)
    assert any(v.abs().max() > 0 for k, v in parent_weights.items() if "lora_B" in k)


def test_on_step_runs_after_every_step_and_can_stop_the_run():
    calls = []

    class Stop(Exception):
        pass

    def on_step(step: int, total: int, loss: float) -> None:
        calls.append((step, total))
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        train_lora(tiny_llama(), CHATS, ByteTokenizer(VOCAB), settings(steps=50), on_step=on_step)
    assert calls == [(1, 50), (2, 50), (3, 50)]
