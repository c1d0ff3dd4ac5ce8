"""The chatbot pipeline: params, a tiny training run, prediction and streaming."""

from __future__ import annotations

import json

import pytest

from worker.pipelines.base import DatasetRef, ParamsError, PredictInput, get_pipeline
from worker.runtime.local import LocalRunContext

TINY = {"epochs": 2, "units": 16, "layers": 1, "max_pairs": 400, "batch_size": 32, "optimizer": "adam"}


@pytest.fixture
def pipeline():
    return get_pipeline("chatbot")


def test_defaults_are_the_books(pipeline):
    params = pipeline.resolve_params(None).model_dump()
    assert {key: params[key] for key in (
        "batch_size", "optimizer", "learning_rate", "learning_rate_decay", "decay_steps", "max_gradient_norm",
        "units", "layers", "cell", "max_length", "vocabulary_size", "max_pairs", "decoding",
    )} == {
        "batch_size": 128, "optimizer": "sgd", "learning_rate": 1.0, "learning_rate_decay": 0.99, "decay_steps": 100,
        "max_gradient_norm": 5.0, "units": 256, "layers": 2, "cell": "gru", "max_length": 10,
        "vocabulary_size": 10000, "max_pairs": 30000, "decoding": "greedy",
    }
    assert pipeline.resolve_params({"optimizer": "adam"}).learning_rate == 0.001
    assert pipeline.resolve_params({"optimizer": "adam", "learning_rate": 0.01}).learning_rate == 0.01
    assert pipeline.default_dataset == "chatterbot_english"
    assert [kind.name for kind in pipeline.dataset_kinds] == ["cornell", "dialogue_pairs"]


def test_bad_params_are_refused_by_field(pipeline):
    with pytest.raises(ParamsError) as error:
        pipeline.resolve_params({"cell": "rnn", "epochs": 0, "steps": 5})
    assert set(error.value.errors) == {"cell", "epochs", "steps"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pipeline = get_pipeline("chatbot")
    params = pipeline.resolve_params(TINY)
    folder, sha256 = pipeline.builtin_dataset("chatterbot_english").build(tmp_path_factory.mktemp("cache"), params)
    ctx = LocalRunContext(seed=params.seed, work_dir=tmp_path_factory.mktemp("run"), show_progress=False)
    result = pipeline.train(ctx, DatasetRef(folder, "dialogue_pairs", "chatterbot_english", sha256), params)
    ctx.close()
    return ctx, result


@pytest.mark.tf
def test_tiny_training_logs_perplexities_per_epoch_and_saves_the_model(trained):
    ctx, result = trained
    assert set(ctx.metrics["perplexity"]) == set(ctx.metrics["val_perplexity"]) == {1, 2}
    for key in ("loss", "perplexity", "val_perplexity", "val_bleu"):
        assert key in result.metrics
    assert 1.0 < result.metrics["val_perplexity"] < 10000
    assert ctx.checkpoints == [1, 2]
    summary = result.summary
    # The first 400 pairs of the corpus, 121 of them of at most 10 tokens on both sides; 10 % held out.
    assert (summary["raw_pairs"], summary["pairs_after_filter"], summary["distinct_pairs"]) == (2393, 121, 121)
    assert (summary["train_pairs"], summary["validation_pairs"]) == (109, 12)
    assert {path.name for path, _, _ in ctx.artifacts} == {"sample_replies.json", "dataset_stats.json", "perplexity.png"}
    assert {path.name for path in result.model_dir.iterdir()} == {
        "model.weights.h5", "chatbot.json", "vocabulary_questions.json", "vocabulary_answers.json",
    }
    samples = json.loads((ctx.artifacts_dir / "sample_replies.json").read_text())
    assert samples[0]["in"] == "how are you?" and isinstance(samples[0]["out"], str)


@pytest.mark.tf
def test_predict_answers_the_books_shape_and_refuses_bad_input(trained):
    _, result = trained
    predictor = get_pipeline("chatbot").load(result.model_dir)
    answer = predictor.predict(PredictInput(data={"sentence": "How are you?"}))
    assert set(answer) == {"in", "out"} and answer["in"] == "How are you?"
    assert answer == predictor.predict(PredictInput(data={"sentence": "How are you?"}))  # greedy: deterministic
    batch = predictor.predict_batch([
        PredictInput(data={"sentence": "How are you?"}),
        PredictInput(data={"sentence": "hello", "decoding": "beam", "beam_width": 3}),
        PredictInput(data={"sentence": "hello", "decoding": "sample", "temperature": 0.5}),
    ])
    assert batch[0] == answer and [item["in"] for item in batch] == ["How are you?", "hello", "hello"]
    for data, message in (
        ({}, "sentence: required"),
        ({"sentence": "  "}, "sentence: required"),
        ({"sentence": "hi", "decoding": "magic"}, "decoding: one of"),
        ({"sentence": "hi", "temperature": "hot"}, "temperature: expected a number"),
        ({"sentence": "x" * 3000}, "sentence: at most 2000"),
    ):
        with pytest.raises(ValueError, match=message):
            predictor.predict(PredictInput(data=data))


@pytest.mark.tf
def test_streamed_pieces_add_up_to_each_reply_and_requests_join_between_steps(trained):
    _, result = trained
    predictor = get_pipeline("chatbot").load(result.model_dir)
    requests = {
        "greedy": PredictInput(data={"sentence": "hello"}),
        "sampled": PredictInput(data={"sentence": "what is your name?", "decoding": "sample", "temperature": 1.5}),
        "beam": PredictInput(data={"sentence": "hi", "decoding": "beam"}),
        "late": PredictInput(data={"sentence": "how are you?"}),
    }
    stream = predictor.open_stream()
    for key in ("greedy", "sampled", "beam"):
        stream.add(key, requests[key])
    with pytest.raises(ValueError, match="sentence: required"):
        stream.add("bad", PredictInput(data={}))
    texts = dict.fromkeys(requests, "")
    outputs, steps = {}, []
    while stream:
        if len(steps) == 1:
            stream.add("late", requests["late"])
        pieces, finished = stream.step()
        steps.append(pieces)
        for key, piece in pieces.items():
            texts[key] += piece
        outputs.update(finished)
    assert set(outputs) == set(requests)
    for key, output in outputs.items():
        assert texts[key] == output["out"]
    for key in ("greedy", "beam", "late"):  # the same reply as a whole prediction
        assert outputs[key] == predictor.predict(requests[key])
    assert sum("beam" in pieces for pieces in steps) <= 1  # beam search's reply comes whole
    assert "late" not in steps[0]  # it joined after the first step...
    assert ("late" in steps[1]) == bool(outputs["late"]["out"])  # ...and got its first word at the next


@pytest.mark.tf
def test_too_few_pairs_is_a_clear_error(tmp_path):
    pipeline = get_pipeline("chatbot")
    (tmp_path / "pairs.tsv").write_text("a very long question that has far more than three tokens\tok\n")
    params = pipeline.resolve_params({**TINY, "max_length": 3})
    ctx = LocalRunContext(work_dir=tmp_path / "run", show_progress=False)
    with pytest.raises(ValueError, match="0 pair\\(s\\) of at most max_length=3"):
        pipeline.train(ctx, DatasetRef(tmp_path, "dialogue_pairs", "tiny", "x"), params)
    ctx.close()


@pytest.mark.tf
def test_a_longer_run_resumes_from_the_checkpoint(trained, tmp_path):
    import shutil

    ctx, _ = trained
    pipeline = get_pipeline("chatbot")
    params = pipeline.resolve_params({**TINY, "epochs": 3})
    folder, sha256 = pipeline.builtin_dataset("chatterbot_english").build(tmp_path / "cache", params)
    work_dir = tmp_path / "again"
    shutil.copytree(ctx.checkpoint_dir, work_dir / "checkpoint")
    resumed = LocalRunContext(seed=params.seed, work_dir=work_dir, show_progress=False)
    result = pipeline.train(resumed, DatasetRef(folder, "dialogue_pairs", "chatterbot_english", sha256), params)
    resumed.close()
    assert "[info] resuming from the checkpoint after epoch 2" in resumed.log_lines
    assert set(resumed.metrics["perplexity"]) == {3}
    assert result.summary["epochs_completed"] == 3
