"""Chapter 7, a chatbot that answers like a movie character: the `chatbot` pipeline.

The book's recipe on the platform: consecutive utterances of each conversation become (question,
answer) pairs; the first `max_pairs` are cleaned (lowercase, punctuation as tokens) and kept when
both sides have at most `max_length` tokens; each side gets its own vocabulary of `vocabulary_size`
words plus `_PAD _GO _EOS _UNK`; a 2 x 256 GRU encoder-decoder with attention learns to produce the
answer, with the book's SGD (learning rate 1.0, x0.99 every 100 steps, gradients clipped to 5) in
batches of 128. Unlike the book, a held-out share of the pairs is kept aside, so `val_perplexity`
is measured on dialogue the model never saw (the book's "eval" was another training batch), and
the vocabularies are built from the training pairs only.

The predictor answers `{"sentence": ...}` with the book's `{"in": ..., "out": ...}`, the reply
detokenised ("i'm here.", not "i ' m here ."); `open_stream` gives a ReplyStream, which hands out
each reply's text as it is decoded, for the chat websocket.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from worker.pipelines.base import (
    BuiltinDataset,
    DatasetKind,
    DatasetRef,
    Params,
    Pipeline,
    PredictInput,
    TrainResult,
)
from worker.pipelines.seq2seq import text

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

WEIGHTS_FILE = "model.weights.h5"
CONFIG_FILE = "chatbot.json"
SOURCE_VOCABULARY_FILE = "vocabulary_questions.json"
TARGET_VOCABULARY_FILE = "vocabulary_answers.json"
MAX_SENTENCE_CHARACTERS = 2000
DECODINGS = ("greedy", "beam", "sample")
# The book's curl examples (chapter 7), asked of every trained model.
BOOK_PROMPTS = ("how are you?", "where are you?", "are you here?", "are you a chatbot?", "what is your name ?")
BLEU_SAMPLE = 500  # held-out pairs decoded for val_bleu
DEFAULT_LEARNING_RATES = {"sgd": 1.0, "adam": 0.001}


class ChatbotParams(Params):
    epochs: int = Field(
        20, gt=0, le=10000,
        description="Passes over the training pairs (book: counted steps, max_steps 20000; its run was stopped "
        "by hand at step 2600).",
    )
    batch_size: int = Field(128, gt=0, le=8192, description="Pairs per training step (book: batch_size, 128 in chapter 7).")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="SGD as the book's model trained, or Adam.")
    learning_rate: float = Field(
        1.0, gt=0, le=100,
        description="Initial learning rate (book: learning_rate, 1.0 in chapter 7); defaults to 0.001 with Adam.",
    )
    learning_rate_decay: float = Field(
        0.99, gt=0, le=1, description="Learning rate factor every decay_steps steps (book: learning_rate_decay_factor)."
    )
    decay_steps: int = Field(100, gt=0, description="Steps between decays (book: steps_per_checkpoint).")
    max_gradient_norm: float = Field(
        5.0, gt=0, description="Global norm gradients are clipped to (book: max_gradient_norm)."
    )
    units: int = Field(256, gt=0, le=4096, description="Units per recurrent layer and embedding size (book: size).")
    layers: int = Field(2, gt=0, le=8, description="Stacked recurrent layers (book: num_layers).")
    cell: Literal["gru", "lstm"] = Field(
        "gru", description="Recurrent cell: GRU, what the book's model actually used (it says LSTM), or LSTM."
    )
    max_length: int = Field(10, gt=0, le=100, description="Longest question or answer kept, in tokens (book: max_len).")
    vocabulary_size: int = Field(
        10000, gt=0, le=200000, description="Most frequent tokens kept per side, plus 4 special ones (book: dict_size)."
    )
    max_pairs: int = Field(
        30000, gt=0,
        description="Pairs read before the length filter (book: the first 30,000, to fit an 8 GB laptop).",
    )
    validation_split: float = Field(
        0.1, gt=0, lt=1, description="Share of the pairs held out for val_perplexity (the book had none)."
    )
    seed: int = Field(7, ge=0, lt=2**32, description="Seeds the split, the shuffling and the weights (the book set none).")
    decoding: Literal["greedy", "beam", "sample"] = Field(
        "greedy", description="How replies are decoded: greedy (the book's), beam search, or temperature sampling."
    )
    beam_width: int = Field(5, gt=0, le=64, description="Replies kept per step by beam search (not in the book).")
    temperature: float = Field(1.0, gt=0, le=10, description="Softmax temperature of sampled decoding (not in the book).")

    @model_validator(mode="before")
    @classmethod
    def _learning_rate_for_optimizer(cls, values: Any) -> Any:
        if isinstance(values, dict) and "learning_rate" not in values and values.get("optimizer") in DEFAULT_LEARNING_RATES:
            values = {**values, "learning_rate": DEFAULT_LEARNING_RATES[values["optimizer"]]}
        return values


def build_chatterbot_dataset(cache_root: Path, params: ChatbotParams) -> tuple[Path, str]:
    from worker.pipelines.chatbot.data import build_chatterbot_corpus

    return build_chatterbot_corpus(cache_root)


class ChatbotPipeline(Pipeline):
    name = "chatbot"
    title = "Chatbot"
    description = (
        "Chapter 7: a sequence-to-sequence GRU with attention learns to answer an utterance with the next one "
        "in a dialogue; reports perplexity on training and held-out pairs, and chats over a websocket."
    )
    Params = ChatbotParams
    dataset_kinds = (
        DatasetKind(
            name="cornell",
            title="Cornell Movie-Dialogs",
            description="A zip holding movie_lines.txt and movie_conversations.txt (' +++$+++ ' separated, "
            "ISO-8859-1), e.g. cornell_movie_dialogs_corpus.zip as downloaded.",
            inspect="worker.pipelines.chatbot.data:inspect_cornell",
        ),
        DatasetKind(
            name="dialogue_pairs",
            title="Dialogue pairs (TSV or JSONL)",
            description='A zip of UTF-8 .tsv files (question<TAB>answer per line) and/or .jsonl files of '
            '{"question": ..., "answer": ...} pairs or {"utterances": [...]} conversations.',
            inspect="worker.pipelines.chatbot.data:inspect_dialogue_pairs",
        ),
    )
    builtin_datasets = (
        BuiltinDataset(
            name="chatterbot_english",
            kind="dialogue_pairs",
            title="chatterbot-corpus, English",
            description="The 21 English files of the chatterbot-corpus package (greetings, trivia, tech support, ...): "
            "2026 short conversations, 2393 consecutive-utterance pairs.",
            build=build_chatterbot_dataset,
        ),
    )
    default_dataset = "chatterbot_english"
    predict_mode = "sync"

    def train(self, ctx: RunContext, dataset: DatasetRef, params: ChatbotParams) -> TrainResult:
        import keras

        from worker.pipelines.seq2seq.model import Perplexity, book_optimizer, build_model, masked_cross_entropy
        from worker.runtime.keras import resume_epoch

        started = time.monotonic()
        prepared = prepare_pairs(ctx, dataset, params)
        keras.utils.set_random_seed(params.seed)
        train_data = _batches(prepared.train, params, shuffle=True)
        validation_data = _batches(prepared.validation, params, shuffle=False)
        strategy = ctx.distribution_strategy()
        with strategy.scope():
            model, initial_epoch = resume_epoch(ctx)
            if model is None:
                model = build_model(
                    len(prepared.source_vocabulary), len(prepared.target_vocabulary),
                    source_length=params.max_length, target_length=params.max_length + 1,
                    units=params.units, layers=params.layers, cell=params.cell, seed=params.seed,
                )
                if ctx.initial_model_dir is not None:  # continuing a parent run: same data, same vocabularies
                    _load_parent_weights(model, ctx.initial_model_dir, prepared)
                    ctx.log("starting from the parent run's weights")
                model.compile(
                    optimizer=book_optimizer(
                        name=params.optimizer, learning_rate=params.learning_rate, decay_rate=params.learning_rate_decay,
                        decay_steps=params.decay_steps, clip_norm=params.max_gradient_norm,
                    ),
                    loss=masked_cross_entropy,
                    metrics=[Perplexity()],
                )
        history: dict[str, list[float]] = {}
        if initial_epoch < params.epochs:
            ctx.log(
                f"training on {len(prepared.train[0])} pairs, validating on {len(prepared.validation[0])}, "
                f"epochs {initial_epoch + 1}..{params.epochs}"
            )
            history = model.fit(
                train_data, validation_data=validation_data, epochs=params.epochs, initial_epoch=initial_epoch,
                callbacks=ctx.keras_callbacks(epochs=params.epochs), shuffle=False, verbose=0,
            ).history
        train_seconds = time.monotonic() - started
        stopped = ctx.should_stop()
        model_dir = _save_model(model, ctx.artifacts_dir / "model", params, prepared)
        state = ctx.checkpoint_state() or {}
        summary = {**prepared.stats, "parameters": model.count_params(), "epochs_completed": int(state.get("epoch", 0)),
                   "train_seconds": round(train_seconds, 2), "stopped": stopped}
        if stopped:
            ctx.log("cancelled: the model so far is saved, evaluation skipped")
            return TrainResult(metrics={}, model_dir=model_dir, summary=summary)
        metrics = _evaluate(ctx, model, model_dir, prepared, params)
        _plot_perplexity(ctx, history, first_epoch=initial_epoch + 1)
        return TrainResult(metrics=metrics, model_dir=model_dir, summary=summary)

    def load(self, model_dir: Path) -> ChatbotPredictor:
        return ChatbotPredictor(Path(model_dir))


# Data -------------------------------------------------------------------------------------------------


class PreparedPairs:
    """Token pairs split and indexed: arrays of (source, decoder inputs, decoder targets) per split."""

    def __init__(self, *, train_pairs, validation_pairs, source_vocabulary, target_vocabulary, max_length, stats):
        self.train_pairs, self.validation_pairs = train_pairs, validation_pairs
        self.source_vocabulary, self.target_vocabulary = source_vocabulary, target_vocabulary
        self.train = _arrays(train_pairs, source_vocabulary, target_vocabulary, max_length)
        self.validation = _arrays(validation_pairs, source_vocabulary, target_vocabulary, max_length)
        self.stats = stats


def prepare_pairs(ctx: RunContext, dataset: DatasetRef, params: ChatbotParams) -> PreparedPairs:
    """The book's build_dataset, with a held-out split drawn before the vocabularies are built."""
    from worker.pipelines.chatbot.data import read_dialogues

    dialogues = read_dialogues(dataset.path, dataset.kind)
    raw_pairs = dialogues.pairs
    cleaned = [(text.tokenise(question), text.tokenise(answer)) for question, answer in raw_pairs[: params.max_pairs]]
    pairs = text.filter_by_length(cleaned, max_length=params.max_length)
    if len(pairs) < 2:
        raise ValueError(
            f"dataset: {len(pairs)} pair(s) of at most max_length={params.max_length} tokens on both sides "
            f"(of {len(raw_pairs)} read); at least 2 are needed for a training and a held-out pair"
        )
    # Held out by distinct pair: corpora repeat pairs (chatterbot's tech support does, a lot), and a
    # held-out pair that is also a training pair measures memory, not generalisation. Training keeps
    # its repeats, as the book's data did.
    unique = list(dict.fromkeys((tuple(question), tuple(answer)) for question, answer in pairs))
    if len(unique) < 2:
        raise ValueError(f"dataset: {len(unique)} distinct pair(s) after the length filter; at least 2 are needed")
    order = list(range(len(unique)))
    random.Random(params.seed).shuffle(order)
    validation_count = min(max(1, round(len(unique) * params.validation_split)), len(unique) - 1)
    held_out = {unique[index] for index in order[:validation_count]}
    validation_pairs = [(list(question), list(answer)) for question, answer in (unique[i] for i in order[:validation_count])]
    train_pairs = [(question, answer) for question, answer in pairs if (tuple(question), tuple(answer)) not in held_out]
    source_vocabulary = text.Vocabulary.build((question for question, _ in train_pairs), params.vocabulary_size)
    target_vocabulary = text.Vocabulary.build((answer for _, answer in train_pairs), params.vocabulary_size)
    stats = {
        "conversations": len(dialogues.conversations),
        "skipped_conversations": dialogues.skipped_conversations,
        "raw_pairs": len(raw_pairs),
        "pairs_after_filter": len(pairs),
        "distinct_pairs": len(unique),
        "train_pairs": len(train_pairs),
        "validation_pairs": len(validation_pairs),
        "source_vocabulary": len(source_vocabulary),
        "target_vocabulary": len(target_vocabulary),
        # The book's "Did not find N words", on the training pairs and on the held-out ones.
        "unknown_source_tokens": source_vocabulary.unknown_count(question for question, _ in train_pairs),
        "unknown_target_tokens": target_vocabulary.unknown_count(answer for _, answer in train_pairs),
        "unknown_validation_source_tokens": source_vocabulary.unknown_count(question for question, _ in validation_pairs),
    }
    ctx.log(
        f"{stats['raw_pairs']} pairs read, {stats['pairs_after_filter']} of at most {params.max_length} tokens; "
        f"{stats['train_pairs']} to train on, {stats['validation_pairs']} held out; vocabularies "
        f"{stats['source_vocabulary']} / {stats['target_vocabulary']}"
    )
    return PreparedPairs(
        train_pairs=train_pairs, validation_pairs=validation_pairs, source_vocabulary=source_vocabulary,
        target_vocabulary=target_vocabulary, max_length=params.max_length, stats=stats,
    )


def _arrays(pairs, source_vocabulary, target_vocabulary, max_length):
    source = text.source_array([question for question, _ in pairs], source_vocabulary, max_length)
    decoder_inputs, decoder_targets = text.target_arrays([answer for _, answer in pairs], target_vocabulary, max_length)
    return source, decoder_inputs, decoder_targets


def _batches(arrays, params: ChatbotParams, *, shuffle: bool):
    import tensorflow as tf

    source, decoder_inputs, decoder_targets = arrays
    dataset = tf.data.Dataset.from_tensor_slices(((source, decoder_inputs), decoder_targets))
    if shuffle:
        dataset = dataset.shuffle(len(source), seed=params.seed, reshuffle_each_iteration=True)
    return dataset.batch(params.batch_size).prefetch(tf.data.AUTOTUNE)


def _load_parent_weights(model, parent_dir: Path, prepared: PreparedPairs) -> None:
    parent_source = text.Vocabulary.load(parent_dir / SOURCE_VOCABULARY_FILE)
    parent_target = text.Vocabulary.load(parent_dir / TARGET_VOCABULARY_FILE)
    if parent_source != prepared.source_vocabulary or parent_target != prepared.target_vocabulary:
        raise ValueError(
            "parent: its vocabularies differ from this run's data; continue a run on the same dataset and params"
        )
    model.load_weights(parent_dir / WEIGHTS_FILE)


# Saving and evaluating --------------------------------------------------------------------------------


def _save_model(model, model_dir: Path, params: ChatbotParams, prepared: PreparedPairs) -> Path:
    """Weights without the optimizer state, the two vocabularies and what serving needs to know."""
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(model_dir / WEIGHTS_FILE)
    prepared.source_vocabulary.save(model_dir / SOURCE_VOCABULARY_FILE)
    prepared.target_vocabulary.save(model_dir / TARGET_VOCABULARY_FILE)
    config = {
        "units": params.units, "layers": params.layers, "cell": params.cell, "max_length": params.max_length,
        "decoding": params.decoding, "beam_width": params.beam_width, "temperature": params.temperature,
        "seed": params.seed,
    }
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return model_dir


def _evaluate(ctx: RunContext, model, model_dir: Path, prepared: PreparedPairs, params: ChatbotParams) -> dict[str, float]:
    """Final perplexities on both splits, BLEU of greedy replies on held-out pairs, sample replies."""
    from worker.pipelines.seq2seq.bleu import corpus_bleu

    train_loss, train_perplexity = _loss_and_perplexity(model, prepared.train, params)
    validation_loss, validation_perplexity = _loss_and_perplexity(model, prepared.validation, params)
    predictor = ChatbotPredictor(model_dir, model=model)
    held_out = prepared.validation_pairs[:BLEU_SAMPLE]
    replies = predictor.reply_tokens([" ".join(question) for question, _ in held_out], decoding="greedy")
    bleu = corpus_bleu([[answer] for _, answer in held_out], replies, smoothing=True)
    metrics = {
        "loss": train_loss, "perplexity": train_perplexity, "val_loss": validation_loss,
        "val_perplexity": validation_perplexity, "val_bleu": bleu,
    }
    # The per-epoch loss and perplexities are fit's; only BLEU is new at the last step.
    ctx.log_metrics(step=params.epochs, val_bleu=bleu)
    ctx.log(", ".join(f"{key}={value:.4f}" for key, value in metrics.items()))

    samples = [{"in": prompt, "out": predictor.reply(prompt)} for prompt in BOOK_PROMPTS]
    samples += [
        {"in": text.detokenise(question), "expected": text.detokenise(answer), "out": predictor.reply(" ".join(question))}
        for question, answer in prepared.validation_pairs[:10]
    ]
    samples_path = ctx.artifacts_dir / "sample_replies.json"
    samples_path.write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n")
    ctx.log_artifact(
        samples_path, kind="samples", metadata={"title": "Replies to the book's prompts and to held-out questions"}
    )
    stats_path = ctx.artifacts_dir / "dataset_stats.json"
    stats_path.write_text(json.dumps(prepared.stats, indent=2) + "\n")
    ctx.log_artifact(stats_path, kind="report", metadata={"title": "Pairs, vocabularies and unknown tokens"})
    return metrics


def _loss_and_perplexity(model, arrays, params: ChatbotParams) -> tuple[float, float]:
    results = model.evaluate(_batches(arrays, params, shuffle=False), verbose=0, return_dict=True)
    return float(results["loss"]), float(results["perplexity"])


def _plot_perplexity(ctx: RunContext, history: dict[str, list[float]], *, first_epoch: int) -> None:
    """Training and held-out perplexity per epoch of this attempt (log scale, as the book's falls)."""
    if not history.get("perplexity"):
        return
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    for key in ("perplexity", "val_perplexity"):
        values = history.get(key, [])
        axes.plot(range(first_epoch, first_epoch + len(values)), values, marker="o", label=key)
    axes.set(xlabel="epoch", ylabel="perplexity", yscale="log", title="Perplexity per epoch")
    axes.legend()
    figure.tight_layout()
    path = ctx.artifacts_dir / "perplexity.png"
    figure.savefig(path)
    ctx.log_artifact(path, kind="plot", metadata={"title": "Training and held-out perplexity"})


# Prediction -------------------------------------------------------------------------------------------


class ChatbotPredictor:
    """Replies with a model folder written by `train`; load once (it compiles and warms up), call often."""

    def __init__(self, model_dir: Path, *, model=None):
        from worker.pipelines.seq2seq.decoding import Seq2SeqDecoder
        from worker.pipelines.seq2seq.model import build_model

        config = json.loads((model_dir / CONFIG_FILE).read_text())
        self.source_vocabulary = text.Vocabulary.load(model_dir / SOURCE_VOCABULARY_FILE)
        self.target_vocabulary = text.Vocabulary.load(model_dir / TARGET_VOCABULARY_FILE)
        self.max_length = config["max_length"]
        self.decoding, self.beam_width, self.temperature = config["decoding"], config["beam_width"], config["temperature"]
        self.seed = config["seed"]
        if model is None:
            model = build_model(
                len(self.source_vocabulary), len(self.target_vocabulary), source_length=self.max_length,
                target_length=self.max_length + 1, units=config["units"], layers=config["layers"], cell=config["cell"],
                unroll=True,  # serving: many calls on short fixed lengths
            )
            model.load_weights(model_dir / WEIGHTS_FILE)
        # A reply has at most max_length words and its EOS, as in training.
        self.decoder = Seq2SeqDecoder(model, source_length=self.max_length, max_output_length=self.max_length + 1)
        self._rng = np.random.default_rng(self.seed)

    # The platform's contract ---------------------------------------------------------------------------

    def predict(self, inputs: PredictInput) -> dict[str, Any]:
        """{"sentence": ...} -> {"in": the sentence, "out": the reply} (the book's API shape)."""
        return self.predict_batch([inputs])[0]

    def predict_batch(self, batch: list[PredictInput]) -> list[dict[str, Any]]:
        requests = [self._request(inputs) for inputs in batch]
        replies: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}  # one decoder call per way of decoding
        for index, request in enumerate(requests):
            groups.setdefault((request["decoding"], request["beam_width"], request["temperature"]), []).append(index)
        for indexes in groups.values():
            options = requests[indexes[0]]
            for index, tokens in zip(indexes, self._decode([requests[i]["sentence"] for i in indexes], options)):
                replies[index] = text.detokenise(tokens)
        return [{"in": request["sentence"], "out": reply} for request, reply in zip(requests, replies)]

    def open_stream(self) -> ReplyStream:
        """Replies decoded a token at a time, that requests join and leave between steps."""
        return ReplyStream(self)

    # Helpers ---------------------------------------------------------------------------------------

    def reply(self, sentence: str, *, decoding: str | None = None) -> str:
        return text.detokenise(self.reply_tokens([sentence], decoding=decoding)[0])

    def reply_tokens(self, sentences: list[str], *, decoding: str | None = None) -> list[list[str]]:
        options = {"decoding": decoding or self.decoding, "beam_width": self.beam_width, "temperature": self.temperature}
        return self._decode(sentences, options)

    def _decode(self, sentences: list[str], options: dict) -> list[list[str]]:
        source = self._source(sentences)
        if options["decoding"] == "beam":
            sequences = self.decoder.beam_search(source, width=options["beam_width"])
        elif options["decoding"] == "sample":
            sequences = np.stack(
                list(self.decoder.steps(source, temperature=options["temperature"], seed=self._next_seed())), axis=1
            )
        else:
            sequences = self.decoder.greedy(source)
        return [text.ids_to_tokens(ids, self.target_vocabulary) for ids in sequences]

    def _source(self, sentences: list[str]) -> np.ndarray:
        # Longer questions keep their last max_length tokens (the book's serving ignored them).
        tokens = [text.tokenise(sentence) for sentence in sentences]
        return text.source_array(tokens, self.source_vocabulary, self.max_length)

    def _next_seed(self) -> int:
        return int(self._rng.integers(2**31))

    def _request(self, inputs: PredictInput) -> dict[str, Any]:
        data = inputs.data
        sentence = data.get("sentence")
        if not isinstance(sentence, str) or not sentence.strip():
            raise ValueError("sentence: required, a non-empty string")
        if len(sentence) > MAX_SENTENCE_CHARACTERS:
            raise ValueError(f"sentence: at most {MAX_SENTENCE_CHARACTERS} characters")
        decoding = data.get("decoding", self.decoding)
        if decoding not in DECODINGS:
            raise ValueError(f"decoding: one of {', '.join(DECODINGS)}")
        beam_width = _number(data, "beam_width", self.beam_width, int, 1, 64)
        temperature = _number(data, "temperature", self.temperature, float, 0.01, 10)
        if decoding == "greedy":
            temperature = 0.0
        return {"sentence": sentence, "decoding": decoding, "beam_width": beam_width, "temperature": temperature}


class ReplyStream:
    """Replies to requests that join between steps, decoded together a token at a time (the decoder's
    DecodingBatch): a reply waits neither for the replies decoded before it nor for the longest of
    them. Greedy and sampled replies gain a word or a punctuation mark a step; beam search's are
    decoded when added and come whole at the next step (a beam's best reply is only known at its end).

    The platform's streaming protocol (worker/runtime/inference.py): `add(key, inputs)` (ValueError
    for a bad input), then `step()` while the stream is not empty.
    """

    def __init__(self, predictor: ChatbotPredictor):
        self.predictor = predictor
        self.batch = predictor.decoder.batch(seed=predictor._next_seed())
        self.replies: dict[Hashable, tuple[str, text.Detokeniser]] = {}  # being decoded: (sentence, words so far)
        self.whole: dict[Hashable, dict[str, Any]] = {}  # beam search's, sent at the next step

    def __len__(self) -> int:
        return len(self.batch) + len(self.whole)

    def add(self, key: Hashable, inputs: PredictInput) -> None:
        request = self.predictor._request(inputs)
        if request["decoding"] == "beam":
            tokens = self.predictor._decode([request["sentence"]], request)[0]
            self.whole[key] = {"in": request["sentence"], "out": text.detokenise(tokens)}
            return
        self.batch.add([key], self.predictor._source([request["sentence"]]), temperature=request["temperature"])
        self.replies[key] = (request["sentence"], text.Detokeniser())

    def step(self) -> tuple[dict[Hashable, str], dict[Hashable, dict[str, Any]]]:
        """(the text each reply gained, where it gained any; the outputs of the replies that ended)."""
        pieces = {key: output["out"] for key, output in self.whole.items() if output["out"]}
        finished, self.whole = self.whole, {}
        emitted, ended = self.batch.step()
        vocabulary = self.predictor.target_vocabulary
        for key, token_id in emitted:
            if token_id != text.EOS_ID:
                piece = self.replies[key][1].add(vocabulary.token(token_id))
                if piece:
                    pieces[key] = piece
        for key in ended:
            sentence, detokeniser = self.replies.pop(key)
            finished[key] = {"in": sentence, "out": text.detokenise(detokeniser.tokens)}
        return pieces, finished


def _number(data: dict, name: str, default, kind, low, high):
    value = data.get(name, default)
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number") from None
    if isinstance(value, float) and not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name}: expected {low}..{high}")
    return value


pipeline = ChatbotPipeline()
