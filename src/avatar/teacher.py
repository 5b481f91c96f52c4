"""Teacher stage, part one: fine-tune a pretrained encoder on the labelled half of train."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rich.progress import Progress

from avatar._io import METRICS, atomic_dir, check_replaceable, checkpoint_path, sha256_json, write_json_atomic
from avatar.device import CPU, Accelerator
from avatar.errors import AvatarError
from avatar.modeling import MAX_LENGTH_KEY, TRAIN_IDS, load_pretrained, save_classifier
from avatar.settings import FinetuneConfig, check_settings
from avatar.stats import test_scores
from avatar.student import POSITION_OFFSET
from avatar.tasks import Task, TaskData, fingerprint, limit_examples
from avatar.graphcodebert import FLOW_LENGTH_KEY, MODEL_TYPE_KEY
from avatar.trainer import Checkpoint, Trainer, encode, encode_graphs, predict_logits, score

log = logging.getLogger(__name__)

def finetune(task: Task, data: TaskData, out_dir: Path, config: FinetuneConfig, progress: Progress | None = None,
             accel: Accelerator = CPU) -> dict:
    """Fine-tune on ``accel``'s device, keep the best checkpoint by validation score, write it (weights on the CPU)
    with ``metrics.json``; return the metrics."""
    check_settings(config)
    check_replaceable(out_dir)
    seed = config.seed
    max_length, flow = config.lengths(task.num_inputs)
    torch.manual_seed(seed)
    model, tokenizer = load_pretrained(task, config.model)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and max_length > positions - POSITION_OFFSET:
        raise AvatarError(f"max_length {max_length} exceeds what {config.model} can read ({positions - POSITION_OFFSET} tokens)")
    train_ex = limit_examples(data.labelled, config.limit, seed)
    valid_ex = limit_examples(data.valid, config.eval_limit, seed)
    test_ex = limit_examples(data.test, config.eval_limit, seed)
    if config.model_type == "graphcodebert":
        if getattr(model.config, "model_type", None) != "roberta":
            raise AvatarError(f"GraphCodeBERT mode needs a RoBERTa encoder (such as microsoft/graphcodebert-base); "
                              f"{config.model} is a {getattr(model.config, 'model_type', 'different')} model")
        from avatar.dataflow import LANGUAGES as FLOW_LANGUAGES

        language = task.language
        if language not in FLOW_LANGUAGES:
            raise AvatarError(f"GraphCodeBERT's data flow is extracted for {', '.join(FLOW_LANGUAGES)} code, not {language}: "
                              "fine-tune this teacher as a plain encoder (no --model-type graphcodebert)")
        setattr(model.config, MODEL_TYPE_KEY, "graphcodebert")  # the labeller reads graphs as the teacher learnt them
        setattr(model.config, FLOW_LENGTH_KEY, flow)
        train, valid, test = (encode_graphs(tokenizer, ex, language, max_length, flow) for ex in (train_ex, valid_ex, test_ex))
    else:
        train, valid, test = (encode(tokenizer, ex, max_length) for ex in (train_ex, valid_ex, test_ex))
    log.info("fine-tuning %s on %d examples (valid %d, test %d)", config.model, len(train), len(valid), len(test))

    checkpoint = Checkpoint(checkpoint_path(out_dir), sha256_json({"settings": asdict(config), "data": data_fingerprints(data)}))
    start = time.perf_counter()
    result = Trainer(model, task, config, train, valid, progress, checkpoint, accel).train()
    train_seconds = time.perf_counter() - start
    metrics = {
        "task": task.name,
        "data": data_fingerprints(data),
        "main_metric": task.main_metric,
        "valid": score(task, model, valid, accel.eval_batch_size, accel),
        # with its 95 % bootstrap intervals and the constant-prediction baseline
        "test": test_scores(task, test.labels, predict_logits(model, test, accel.eval_batch_size, accel=accel)),
        "best_step": result.best_step,
        "steps": result.steps,
        "train_seconds": round(train_seconds, 1),
        "examples": {"train": len(train), "valid": len(valid), "test": len(test)},
        "settings": asdict(config),
        "history": result.history,
    }
    setattr(model.config, MAX_LENGTH_KEY, max_length)  # the labeller reads code as the teacher learnt it
    with atomic_dir(out_dir) as tmp:
        save_classifier(model.cpu(), tokenizer, task, tmp)
        write_json_atomic(tmp / TRAIN_IDS, [ex.id for ex in train_ex], indent=None)
        write_json_atomic(tmp / METRICS, metrics)
    checkpoint.remove()
    return metrics


def data_fingerprints(data: TaskData) -> dict[str, str]:
    """What a teacher was made from: a changed split means a new teacher."""
    return {split: fingerprint(data.split(split)) for split in ("labelled", "valid", "test")}
