"""Where torch work runs: device resolution, mixed precision, batches through loader workers, tensors and
models following the device (checked with the CPU and the meta device), the CPU path unchanged."""

import math
import sys
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from avatar.cli import main
from avatar.device import CPU, Accelerator, accelerator, placement, resolve_device
from avatar.errors import AvatarError
from avatar.executor import LocalExecutor
from avatar.modeling import load_pretrained
from avatar.settings import DeviceConfig, TrainConfig
from avatar.tasks import get_task
from avatar.trainer import Trainer, batch_rows, collate, encode, param_groups, predict_logits

from conftest import write_defect_data

sys.path.insert(0, str(Path(__file__).parent))
from _jobs import visible_gpu  # noqa: E402

META = Accelerator(torch.device("meta"), None, 2, 8)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _fake_cuda(monkeypatch, count=2, bf16=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)


@no_cuda
def test_auto_is_the_cpu_here_and_the_cpu_has_no_autocast():
    assert resolve_device("auto") == torch.device("cpu")
    accel = accelerator(DeviceConfig())
    assert accel.device.type == "cpu" and accel.dtype is None and accel.scaler() is None
    with accel.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:0", "mps:1", ""])
def test_an_unknown_device_is_one_clear_line(name):
    with pytest.raises(AvatarError, match=r"device must be auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


@no_cuda
def test_cuda_asked_for_without_cuda_is_one_clear_line():
    with pytest.raises(AvatarError, match="sees no CUDA device"):
        resolve_device("cuda")


@no_cuda
@pytest.mark.parametrize("device,says", [("tpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
                                         ("cuda:0", "sees no CUDA device")])
def test_the_cli_refuses_a_device_in_one_line(tmp_path, monkeypatch, capsys, device, says):
    for args in (["finetune", "--out", str(tmp_path / "t")], ["distill", "--soft-labels", str(tmp_path / "s.json"), "--out", str(tmp_path / "s")],
                 ["evaluate", "--model", "arch:codebert-base"], ["label", "--teacher", str(tmp_path), "--out", str(tmp_path / "l.json")],
                 ["compress", "--out", str(tmp_path / "run")]):
        monkeypatch.setattr(sys, "argv", ["avatar", *args, "--device", device])
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and says in err[0], (args, err)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_cuda_precision_bf16_where_supported_else_fp16_with_scaling_or_off(monkeypatch):
    _fake_cuda(monkeypatch, bf16=True)
    assert accelerator(DeviceConfig(device="cuda")).dtype == torch.bfloat16
    assert accelerator(DeviceConfig(device="auto")).device == torch.device("cuda")  # auto picks CUDA when present
    _fake_cuda(monkeypatch, bf16=False)
    fp16 = accelerator(DeviceConfig(device="cuda:1"))
    assert fp16.dtype == torch.float16 and fp16.device == torch.device("cuda:1")
    assert accelerator(DeviceConfig(device="cuda", mixed_precision=False)).dtype is None
    with pytest.raises(AvatarError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_candidates_are_placed_one_per_gpu(monkeypatch):
    assert placement(DeviceConfig(device="cpu"), "local") == (None, 0, {**vars(DeviceConfig()), "device": "cpu"})
    _fake_cuda(monkeypatch, count=2)
    assert placement(DeviceConfig(), "local")[:2] == (None, 2)  # a worker per GPU, each seeing its own as "cuda"
    assert placement(DeviceConfig(), "local")[2]["device"] == "cuda"
    assert placement(DeviceConfig(device="cuda:1"), "local")[:2] == (1, 0)  # the one GPU named: one job at a time
    assert placement(DeviceConfig(device="cuda:1"), "local")[2]["device"] == "cuda:1"
    assert placement(DeviceConfig(), "ray")[:2] == (None, 1)  # Ray reserves one GPU per task


def test_each_local_worker_sees_only_its_own_gpu(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    executor = LocalExecutor(workers=8, gpus=2)
    assert executor.workers == 2
    results = [r for _, r in executor.run(visible_gpu, [{"key": str(i), "sleep": 2.0} for i in range(2)])]
    assert sorted(r["gpu"] for r in results) == ["0", "1"] and len({r["pid"] for r in results}) == 2


def _data(tmp_path, encoder, seed=0):
    task = get_task("defect")
    data = task.load(write_defect_data(tmp_path / "d", sizes=(160, 40, 40)))
    torch.manual_seed(seed)
    model, tokenizer = load_pretrained(task, str(encoder))
    return task, model, encode(tokenizer, data.labelled, 48), encode(tokenizer, data.valid, 48)


def test_cpu_training_is_the_plain_pytorch_loop_it_was(tmp_path, tiny_encoder):
    """One epoch (its one validation keeps the last weights): the Trainer on the CPU accelerator gives exactly the
    weights of the plain loop (AdamW, linear warm-up, clipping, length-bucketed batches, in-loop collation)."""
    cfg = TrainConfig(epochs=1, learning_rate=2e-3, batch_size=16, seed=3)
    task, model, train, valid = _data(tmp_path, tiny_encoder)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    total = math.ceil(len(train) / cfg.batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model.train()
    for rows in batch_rows(train, cfg.batch_size, generator, cfg.length_buckets):
        F.cross_entropy(model(*collate(train, rows)), torch.as_tensor(train.labels[rows])).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    task, model, train, valid = _data(tmp_path, tiny_encoder)
    Trainer(model, task, cfg, train, valid, accel=accelerator(DeviceConfig(device="cpu"))).train()
    got = model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_loader_workers_collate_the_same_batches_in_order(tmp_path, tiny_encoder):
    _, _, train, _ = _data(tmp_path, tiny_encoder)
    items = [list(range(i, min(i + 7, len(train)))) for i in range(0, len(train), 7)]
    through_workers = list(META.batches(items, partial(collate, train)))  # on an accelerator: DataLoader workers
    assert [rows for rows, _ in through_workers] == items
    for rows, tensors in through_workers:
        assert all(torch.equal(a, b) for a, b in zip(tensors, collate(train, rows)))


@dataclass(frozen=True)
class Recording(Accelerator):
    """The CPU, noting every group of tensors sent to it."""

    moved: list = field(default_factory=list)

    def to_device(self, tensors):
        self.moved.append([t.device.type for t in tensors])
        return super().to_device(tensors)


def test_training_inputs_go_through_the_accelerator_and_models_follow_its_device(tmp_path, tiny_encoder):
    task, model, train, valid = _data(tmp_path, tiny_encoder)
    accel = Recording(torch.device("cpu"), None, 0, 8)
    cfg = TrainConfig(epochs=1, batch_size=32, micro_batch_size=16, seed=0)
    result = Trainer(model, task, cfg, train, valid, accel=accel).train()
    chunks = sum(math.ceil(min(32, len(train) - 32 * i) / 16) for i in range(result.steps))
    assert len(accel.moved) == chunks  # every micro-batch of every step
    task, model, train, valid = _data(tmp_path, tiny_encoder)
    trainer = Trainer(model, task, cfg, train, valid, accel=META)
    assert {p.device.type for p in trainer.model.parameters()} == {"meta"}


class Spy(torch.nn.Module):
    """A classifier that notes where its inputs are and answers zeros (on the CPU)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []
        self.num_classes = 2

    def forward(self, ids, mask):
        self.seen.append((ids.device.type, mask.device.type))
        return torch.zeros(ids.shape[0], 2)


def test_inference_inputs_follow_the_model_to_its_device(tmp_path, tiny_encoder):
    _, _, train, _ = _data(tmp_path, tiny_encoder)
    spy = Spy().to("meta")
    logits = predict_logits(spy, train, 8, accel=META)
    assert logits.shape == (len(train), 2)
    assert set(spy.seen) == {("meta", "meta")} and len(spy.seen) == math.ceil(len(train) / 8)
    cpu = Spy()
    predict_logits(cpu, train, 8)  # the default: where the model is, the CPU
    assert set(cpu.seen) == {("cpu", "cpu")}


def test_labelling_runs_the_teacher_on_the_device(tmp_path, defect_classifier, monkeypatch):
    import avatar.labels as labels
    from avatar.device import model_device

    seen = []

    def spy(model, data, batch_size, on_batch=None, accel=CPU):
        seen.append((model_device(model).type, batch_size, accel))
        return torch.zeros(len(data), 2).numpy()

    monkeypatch.setattr(labels, "predict_logits", spy)
    task = get_task("defect")
    data = task.load(write_defect_data(tmp_path / "d"))
    labels.label(defect_classifier, task, data.unlabelled, tmp_path / "soft.json", accel=META)
    assert seen == [("meta", META.eval_batch_size, META)]


def test_measuring_places_a_copy_on_the_accelerator_and_times_the_cpu(tmp_path, defect_classifier):
    from avatar.measure import load_subjects, on_accelerator
    from avatar.settings import MeasureConfig

    task = get_task("defect")
    data = task.load(write_defect_data(tmp_path / "d"))
    cfg = MeasureConfig(runs=3, warmup=1)
    cpu_only = load_subjects([str(defect_classifier), "arch:codebert-base"], task, data.test, cfg, 0)
    assert all(s.on_device is None and s.scores is None for s in cpu_only)
    assert on_accelerator(cpu_only, cfg, CPU) == {}  # on the CPU there is no extra column
    placed = load_subjects([str(defect_classifier)], task, data.test, cfg, 0, accel=replace(META, loader_workers=0))
    assert placed[0].on_device is not None and placed[0].scores is not None
    # the subject the CPU times keeps its model on the CPU; the copy is on the accelerator
    assert placed[0].logits(placed[0].inputs.subset([0]), 1).shape == (1, 2)
    with pytest.raises((NotImplementedError, RuntimeError)):  # meta tensors hold no values to copy back
        placed[0].on_device(placed[0].inputs.subset([0]), 1)


def test_the_report_labels_the_accelerator_column_as_extra():
    from avatar.report import headline

    def result(role, accelerator=None):
        r = {"role": role, "test": None, "parameters": 10, "size_mb": 1.0, "inputs": {"functions": 3, "tokens_per_input": 50.0},
             "latency_ms": {"median": 2.0}, "throughput": {"batch_size": 32, "examples_per_second": 9.0},
             "energy": {"method": "estimate", "joules_per_example": 0.1, "resolved": True}, "carbon": {"grams_per_1000_examples": 0.01}}
        return r | ({"accelerator": accelerator} if accelerator else {})

    gpu = {"device": "NVIDIA H200", "precision": "bfloat16 autocast", "latency_ms": {"median": 0.5}}
    metrics = {"main_metric": "accuracy", "results": [result("teacher", gpu), result("student (ONNX int8)")]}
    _, rows = headline(metrics)
    assert rows[-1] == ["extra: latency ms p50 on NVIDIA H200 (bfloat16 autocast, batch 1)", "0.50", "-"]
    assert "latency ms p50 (batch 1)" in [r[0] for r in rows]  # the CPU's figure stays the headline
    _, cpu_rows = headline({"main_metric": "accuracy", "results": [result("teacher")]})
    assert not any(r[0].startswith("extra") for r in cpu_rows)
