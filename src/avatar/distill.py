"""Distil a student from the teacher's soft labels on the unlabelled half.

Loss: KL(teacher || student) on temperature-softened distributions, scaled by T² so its gradients keep their
size as T changes, optionally plus alpha times cross-entropy on the teacher's argmax. A teacher known only by
its hard labels (an imported predictions file) is followed by cross-entropy on them, optionally smoothed: a
temperature has nothing to soften there. With ``ground_truth`` > 0 the labelled half's true labels join in
(cross-entropy, that weight); at 0, the paper's mode, the student never sees a ground-truth training label. The
labelled validation split picks its best checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from avatar._io import METRICS, atomic_dir, check_replaceable, checkpoint_path, sha256_json, write_json_atomic
from avatar.cost import MB, parameter_count, training_bytes_per_example
from avatar.device import CPU, Accelerator
from avatar.errors import AvatarError
from avatar.labels import SoftLabels
from avatar.modeling import MAX_LENGTH_KEY, Classifier, build_student, save_classifier
from avatar.student import StudentConfig
from avatar.settings import DistillConfig, TrainConfig
from avatar.stats import test_scores
from avatar.tasks import Example, Task, TaskData, fingerprint, limit_examples
from avatar.trainer import Checkpoint, Encoded, Trainer, encode, predict_logits, score_and_logits
from avatar.vocab import distinct_texts, train_tokenizer

log = logging.getLogger(__name__)

STUDENT_CONFIG = "student_config.json"


class DistillationTrainer(Trainer):
    """A ``Trainer`` whose loss follows the teacher's logits (or its hard labels) instead of ground-truth labels."""

    def __init__(self, *args, teacher_logits: np.ndarray | None, temperature: float, alpha: float, label_smoothing: float = 0.0,
                 teacher_rows: int | None = None, ground_truth: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher_logits = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32, device=self.accel.device)  # (N_t, C)
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing
        # rows from teacher_rows on are labelled-half examples with their true labels, weighted by ground_truth
        self.teacher_rows = len(self.train_data) if teacher_rows is None else teacher_rows
        self.ground_truth = ground_truth

    def loss(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """The batch mean of the teacher's loss on its rows and ``ground_truth`` x cross-entropy on the true-label rows."""
        rows = list(rows)
        mine = [k for k, r in enumerate(rows) if r < self.teacher_rows]
        truth = [k for k, r in enumerate(rows) if r >= self.teacher_rows]
        total = logits.new_zeros(())
        if mine:
            total = total + self._teacher_loss(logits[mine], [rows[k] for k in mine]) * (len(mine) / len(rows))
        if truth:
            labels = torch.as_tensor(self.train_data.labels[[rows[k] for k in truth]], device=logits.device)
            total = total + self.ground_truth * F.cross_entropy(logits[truth], labels) * (len(truth) / len(rows))
        return total

    def _teacher_loss(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        if self.teacher_logits is None:  # hard labels: the train set's labels are the teacher's
            return F.cross_entropy(logits, torch.as_tensor(self.train_data.labels[rows], device=logits.device), label_smoothing=self.label_smoothing)
        teacher = self.teacher_logits[rows]  # (B, C)
        T = self.temperature
        loss = F.kl_div(
            F.log_softmax(logits / T, dim=-1), F.log_softmax(teacher / T, dim=-1), log_target=True, reduction="batchmean"
        ) * (T * T)
        if self.alpha:
            loss = loss + self.alpha * F.cross_entropy(logits, teacher.argmax(dim=-1))
        return loss


def teacher_view(examples: Sequence[Example], soft_labels: SoftLabels) -> tuple[list[Example], np.ndarray | None]:
    """The unlabelled examples as the student sees them: labels replaced by the teacher's predictions; with the
    teacher's logits (None when it gave hard labels only)."""
    if soft_labels.data != fingerprint(examples):
        raise AvatarError("the soft labels were made for other data (or another split of train): label this data first")
    preds = soft_labels.preds
    missing = [ex.id for ex in examples if ex.id not in preds]
    if missing:
        raise AvatarError(f"soft labels lack {len(missing)} unlabelled example(s), e.g. {missing[0]!r}")
    view = [Example(ex.id, ex.texts, int(preds[ex.id])) for ex in examples]
    if soft_labels.kind == "label":
        return view, None
    return view, np.array([soft_labels.logits[ex.id] for ex in examples], dtype=np.float32)


def distill(
    task: Task,
    data: TaskData,
    soft_labels: SoftLabels,
    student: StudentConfig,
    out_dir: Path,
    config: DistillConfig | None = None,
    progress: Progress | None = None,
    accel: Accelerator = CPU,
) -> dict:
    """Train ``student`` from scratch on the soft labels, on ``accel``'s device; write the best checkpoint (its
    weights on the CPU); return its metrics."""
    config = config or DistillConfig()
    check_replaceable(out_dir)
    soft_labels.check_task(task)
    view, all_logits = teacher_view(data.unlabelled, soft_labels)
    train_ex = limit_examples(view, config.limit, config.seed)  # stratified by the teacher's prediction
    row = {ex.id: i for i, ex in enumerate(view)}
    logits = None if all_logits is None else all_logits[[row[ex.id] for ex in train_ex]]
    truth_ex = limit_examples(data.labelled, config.limit, config.seed) if config.ground_truth > 0 else []  # true labels
    valid_ex = limit_examples(data.valid, config.eval_limit, config.seed)
    test_ex = limit_examples(data.test, config.eval_limit, config.seed)

    start = time.perf_counter()
    # trained on every training function there is, whatever ``limit`` keeps for the optimiser: a short-budget sample
    # gets the tokenizer its full distillation would (cached by kind, size and data, so samples share it)
    corpus = view + (list(data.labelled) if config.ground_truth > 0 else [])
    tokenizer = train_tokenizer(student.tokenizer, student.vocab_size, distinct_texts(corpus))
    tokenizer_seconds = time.perf_counter() - start
    torch.manual_seed(config.seed)
    model = build_student(task, student)
    train, valid, test = (encode(tokenizer, ex, student.max_sequence_length) for ex in (train_ex + truth_ex, valid_ex, test_ex))
    # e.g. 12 heads x 448 tokens x 8 layers at batch 64 would need ~20 GB at once: the same batch, in pieces
    micro = max(1, config.memory_mb * MB // training_bytes_per_example(student, task.num_inputs))
    train_config = TrainConfig(
        epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=student.learning_rate,
        batch_size=student.batch_size,
        micro_batch_size=micro if micro < student.batch_size else None,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        evals_per_epoch=config.evals_per_epoch,
        length_buckets=config.length_buckets,
        patience=config.patience,
        seed=config.seed,
    )
    key = {"student": asdict(student), "settings": asdict(config), "soft_labels": [soft_labels.key, soft_labels.data],
           "data": [fingerprint(ex) for ex in (train_ex, truth_ex, valid_ex)]}
    checkpoint = Checkpoint(checkpoint_path(out_dir), sha256_json(key))
    trainer = DistillationTrainer(
        model, task, train_config, train, valid, progress=progress, checkpoint=checkpoint,
        teacher_logits=logits, temperature=config.temperature, alpha=config.alpha, label_smoothing=config.label_smoothing,
        teacher_rows=len(train_ex), ground_truth=config.ground_truth, accel=accel,
    )
    result = trainer.train()
    valid_scores, valid_logits = score_and_logits(task, model, valid, accel.eval_batch_size, accel)
    valid_preds, valid_margins = task.read_logits(valid_logits)
    metrics = {
        "task": task.name,
        "main_metric": task.main_metric,
        "teacher_kind": soft_labels.kind,
        "loss": _loss_words(config, hard=logits is None, truth=len(truth_ex)),
        "valid": valid_scores,
        # per validation example, for the score's noise: margins (two classes) or predicted classes
        **({"valid_margins": [round(float(m), 4) for m in valid_margins]} if valid_margins is not None else {"valid_preds": valid_preds}),
        # with its 95 % bootstrap intervals and the constant-prediction baseline
        "test": test_scores(task, test.labels, predict_logits(model, test, accel.eval_batch_size, accel=accel)),
        "agreement_with_teacher": _agreement(model, train.subset(range(len(train_ex))), accel),
        "parameters": parameter_count(student, task.num_inputs),
        "best_step": result.best_step,
        "steps": result.steps,
        "micro_batch_size": train_config.micro_batch_size,
        "tokenizer_seconds": round(tokenizer_seconds, 2),
        "train_seconds": round(time.perf_counter() - start - tokenizer_seconds, 1),
        "examples": {"train": len(train_ex), "labelled": len(truth_ex), "valid": len(valid), "test": len(test)},
        "student": asdict(student),
        "settings": asdict(config),
        "history": result.history,
    }
    save_student(model.cpu(), tokenizer, task, student, metrics, out_dir)
    checkpoint.remove()
    return metrics


def _loss_words(config: DistillConfig, hard: bool, truth: int) -> str:
    """The training loss in words, as the metrics and the output say it."""
    words = (f"cross-entropy on the teacher's hard labels (label smoothing {config.label_smoothing:g}; the temperature does not apply)"
             if hard else f"KL at temperature {config.temperature:g}"
             + (f" + {config.alpha:g} x cross-entropy on the teacher's argmax" if config.alpha else ""))
    if truth:
        words += f"; plus {config.ground_truth:g} x cross-entropy on the true labels of {truth} labelled-half examples"
    return words


def _agreement(model: Classifier, train: Encoded, accel: Accelerator) -> float:
    """Share of training examples where the student predicts what the teacher predicted."""
    return float((predict_logits(model, train, accel.eval_batch_size, accel=accel).argmax(axis=1) == train.labels).mean())


def save_student(model: Classifier, tokenizer, task: Task, student: StudentConfig, metrics: dict, out_dir: Path) -> None:
    setattr(model.config, MAX_LENGTH_KEY, student.max_sequence_length)
    with atomic_dir(Path(out_dir)) as tmp:
        save_classifier(model, tokenizer, task, tmp)
        student.save(tmp / STUDENT_CONFIG)
        write_json_atomic(tmp / METRICS, metrics)
