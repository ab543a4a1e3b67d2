"""``distill``: a K-step student from a teacher, resumable step for step.

Step i draws everything it needs from a generator seeded with ``derive_seed(seed, i)``, so a run
stopped after any step and resumed from its state continues exactly as if it had never stopped
(same device, backend, torch build and thread count). The loss of every step stays on the device
until the state is saved: no host read inside the loop.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .._checks import check_device
from ..backends.compiled import own_code  # a code object of its own: its own Dynamo cache
from ..checkpoint import load_checkpoint, pretrained_path, read_checkpoint
from ..constants import DISTILL_BACKENDS, PRETRAINED
from ..data import make_dataset
from ..distributed import tensors_sha256
from ..model import MLPDiffusion, check_model_steps
from ..rows import derive_seed
from ..schedule import Schedule, make_schedule
from ..training.steps import learning_rate_on, lr_table, make_optimizer
from .config import DistillConfig
from .targets import ProgressiveTargets, TrajectoryTargets, describe_method, student_loss, student_spec

CLIP_NORM = 1.0  # the gradient norm clip of train's recipes


@dataclass
class DistillResult:
    student: MLPDiffusion  # carries its plan: model.student_plan
    schedule: Schedule
    config: DistillConfig
    teacher: dict  # where the teacher came from: source, sha256 of its weights
    method_details: dict
    iteration: int = 0  # optimizer steps done, over all rounds
    losses: torch.Tensor | None = None  # [total_iterations] float32 on the device, the loss of each step
    wall_time_s: float = 0.0
    interrupted: bool = False
    optimizer: torch.optim.Optimizer | None = None
    round_teacher: nn.Module | None = None  # progressive: the round's teacher (a previous student)
    device: str = "cpu"
    backend: str = "eager"
    compile_s: float = 0.0  # the first (compiling) step's seconds with backend "compile", inside wall_time_s

    @property
    def done(self) -> bool:
        return self.iteration >= self.config.total_iterations

    def final_loss(self) -> float | None:
        """The mean loss of the last 100 steps (reads the device)."""
        if not self.iteration:
            return None
        return float(self.losses[max(0, self.iteration - 100):self.iteration].mean())

    def metadata(self) -> dict:
        """A student checkpoint's metadata: its plan and how it was made."""
        return {"student_plan": dict(self.student.student_plan),
                "distill": {"config": asdict(self.config), "teacher": self.teacher, **self.method_details,
                            "iterations_done": self.iteration, "final_loss": self.final_loss(),
                            "wall_time_s": round(self.wall_time_s, 1), "device": self.device, "backend": self.backend,
                            "torch_version": str(torch.__version__), "num_threads": torch.get_num_threads()}}

    def train_state(self) -> dict:
        """What ``distill(..., resume=)`` needs to continue step for step (kept in unfinished checkpoints)."""
        state = {"kind": "distill", "config": asdict(self.config), "iteration": self.iteration,
                 "losses": self.losses.detach().cpu(), "optimizer_state": self.optimizer.state_dict(),
                 "teacher": self.teacher, "wall_time_s": self.wall_time_s, "torch_version": str(torch.__version__),
                 "num_threads": torch.get_num_threads(), "device": torch.device(self.device).type,
                 "backend": self.backend}
        if self.round_teacher is not None:
            state["round_teacher"] = {k: v.detach().cpu() for k, v in self.round_teacher.state_dict().items()}
        return state


def _teacher(teacher, device: torch.device) -> tuple:
    """(model, schedule, provenance, the dataset it was trained on) of a model, checkpoint path or bundled
    name, on ``device``."""
    if isinstance(teacher, MLPDiffusion):
        model, schedule, provenance, metadata = teacher, None, {"source": "model"}, {}
    elif isinstance(teacher, str):
        path = pretrained_path(teacher) if teacher in PRETRAINED else teacher
        model, schedule, metadata = load_checkpoint(path, map_location=device)
        provenance = {"source": teacher}
    else:
        raise TypeError(f"teacher must be an MLPDiffusion, a checkpoint path or a bundled model's name, got "
                        f"{type(teacher).__name__}")
    if model.student_plan is not None:
        raise ValueError(f"the teacher ({provenance['source']}) is a distilled student: distill from the model it "
                         "was distilled from")
    dataset = (metadata.get("train_config") or {}).get("dataset")
    return model, schedule, provenance, dataset


def _check_resume(state, config: DistillConfig, teacher: dict, device: torch.device, backend: str) -> dict:
    needed = ("config", "iteration", "losses", "optimizer_state", "teacher", "wall_time_s")
    if not isinstance(state, dict) or state.get("kind") != "distill" or any(k not in state for k in needed):
        raise ValueError("resume must be the state of a distillation run (read_distill_state)")
    wanted = asdict(config)
    if state["config"] != wanted:
        differ = [f"{k}: {state['config'][k]} then, {wanted.get(k)} now" for k in sorted(state["config"])
                  if state["config"][k] != wanted.get(k)]
        raise ValueError(f"the run to resume was distilled with other settings ({'; '.join(differ)})")
    done, total = state["iteration"], config.total_iterations
    if not 0 <= done < total or tuple(state["losses"].shape) != (total,):
        raise ValueError(f"the state to resume is damaged: {done} steps done of {total}, "
                         f"{list(state['losses'].shape)} losses")
    if config.method == "progressive" and done % config.iterations and done >= config.iterations \
            and not isinstance(state.get("round_teacher"), dict):
        raise ValueError("the state to resume is damaged: it has no teacher for its round")
    then = (state.get("device"), state.get("backend"))
    if then != (device.type, backend):
        raise ValueError(f"the run to resume drew its numbers on {then[0]} with backend {then[1]}: resume it "
                         f"there (device {then[0]!r}, backend {then[1]!r}), not on {device.type} with {backend}")
    if state["teacher"]["sha256"] != teacher["sha256"]:
        raise ValueError(f"the run to resume was distilled from another teacher ({state['teacher']['source']}, "
                         f"weights sha256 {state['teacher']['sha256'][:12]}...)")
    here = {"torch_version": str(torch.__version__), "num_threads": torch.get_num_threads()}
    differ = [f"{k} {state[k]} then, {v} now" for k, v in here.items() if state.get(k) != v]
    if differ:
        warnings.warn("resuming with " + ", ".join(differ) + ": the run continues, but not step for step as "
                      "it would have without the stop", stacklevel=3)
    return state


def _make_targets(config: DistillConfig, teacher, schedule, device, teacher_dataset: str | None):
    if config.method == "trajectory":
        return TrajectoryTargets(teacher, schedule, config, device)
    dataset = config.dataset or teacher_dataset or "s_curve"
    data = make_dataset(dataset, config.data_size, seed=config.seed).to(device)
    return ProgressiveTargets(schedule, config, dataset, data, device)


def read_distill_state(path) -> tuple:
    """``(student, state)`` of an unfinished distillation checkpoint, for ``distill(..., resume=)``."""
    student, _, _, state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("kind") != "distill":
        raise ValueError(f"{path!r} holds no distillation state to resume (a finished student keeps none)")
    expected = {"config": dict, "iteration": int, "losses": torch.Tensor, "optimizer_state": dict, "teacher": dict,
                "wall_time_s": float}
    for key, kind in expected.items():
        if not isinstance(state.get(key), kind):
            raise ValueError(f"{path!r} has a damaged distillation state: {key!r} is "
                             f"{type(state.get(key)).__name__}, not {kind.__name__}")
    return student, state


def _start_round(result: DistillResult, targets, round_index: int, round_teacher: nn.Module) -> None:
    """A fresh optimizer, and for progressive distillation the round's teacher and grids."""
    if result.config.method == "progressive":
        targets.set_round(round_index, round_teacher)
        result.round_teacher = round_teacher if round_index else None  # round 0's is the teacher itself
    result.student.student_plan = student_spec(targets.plan.timesteps)
    result.optimizer = make_optimizer(result.student, result.config.lr, torch.device(result.device))


def _frozen_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def _resume_into(result: DistillResult, targets, state: dict, saved_student: nn.Module, teacher) -> None:
    config, device = result.config, torch.device(result.device)
    result.student.load_state_dict(saved_student.state_dict())
    result.iteration, result.wall_time_s = int(state["iteration"]), float(state["wall_time_s"])
    result.losses.copy_(state["losses"].to(device))
    if result.iteration % config.iterations == 0:
        return  # at a round's start: the loop begins it, as it would have
    round_index = result.iteration // config.iterations
    round_teacher = teacher
    if round_index:
        round_teacher = _frozen_copy(saved_student).to(device)  # the student's shape, the round teacher's weights
        round_teacher.load_state_dict(state["round_teacher"])
    _start_round(result, targets, round_index, round_teacher)
    result.optimizer.load_state_dict(state["optimizer_state"])
    learning_rate_on(result.optimizer, device)  # loaded as saved: a CUDA run's rate back on the device


def _update(result: DistillResult, loss: torch.Tensor, rate: torch.Tensor) -> None:
    optimizer = result.optimizer
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(result.student.parameters(), CLIP_NORM)
    if isinstance(optimizer.param_groups[0]["lr"], torch.Tensor):  # CUDA: on the device, no host read
        optimizer.param_groups[0]["lr"].copy_(rate)
    else:
        optimizer.param_groups[0]["lr"] = float(rate)
    optimizer.step()


def _run(result: DistillResult, targets, teacher, progress: bool, should_stop, on_checkpoint, every: int) -> None:
    config, device = result.config, torch.device(result.device)
    loss_fn = student_loss
    if result.backend == "compile":
        loss_fn = torch.compile(own_code(student_loss), fullgraph=True, dynamic=False)
    rates = lr_table("cosine", config.lr, 0, config.iterations, device)  # [iterations], each round's
    bar = tqdm(total=config.total_iterations, initial=result.iteration, desc="distill", unit="step",
               disable=not progress)
    start, before = time.perf_counter(), result.wall_time_s
    with bar:
        while not result.done:
            i = result.iteration
            if i % config.iterations == 0:
                round_index = i // config.iterations
                _start_round(result, targets, round_index, _frozen_copy(result.student) if round_index else teacher)
            generator = torch.Generator(device).manual_seed(derive_seed(config.seed, i))
            first = time.perf_counter()
            loss = loss_fn(result.student, *targets.rows(generator))
            _update(result, loss, rates[i % config.iterations])
            result.losses[i] = loss.detach()
            if result.backend == "compile" and not result.compile_s:  # the first step compiles: reported apart
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # once, after the compiling step
                result.compile_s = time.perf_counter() - first
            result.iteration = i + 1
            result.wall_time_s = before + time.perf_counter() - start
            bar.update()
            if on_checkpoint is not None and every and result.iteration % every == 0 and not result.done:
                on_checkpoint(result)
            if should_stop is not None and not result.done and should_stop():
                result.interrupted = True
                break


def distill(teacher, steps: int = 4, method: str = "trajectory", *, schedule: Schedule | None = None,
            device="cpu", backend: str = "eager", progress: bool = True, resume: tuple | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_checkpoint: Callable[[DistillResult], None] | None = None, checkpoint_every: int = 500,
            **options) -> DistillResult:
    """A ``steps``-step student of ``teacher`` (a model, a checkpoint path or a bundled model's name).

    The student is an ``MLPDiffusion`` of the teacher's shape carrying its own plan
    (``student.student_plan``): ``sample(student, n)`` runs it in exactly ``steps`` model calls on
    any backend. ``method``: "trajectory" (default; the best measured) or "progressive"
    (``ddpm_fast.distillation.config``). ``options``: the other ``DistillConfig`` fields
    (iterations, batch_size, lr, seed, teacher_sampler, teacher_steps, timesteps, start_steps,
    dataset, data_size). ``backend``: "eager" or "compile" (the student's loss compiled).
    ``resume``: ``(student, state)`` from ``read_distill_state`` continues that run step for step.
    ``should_stop()`` is polled after every step; ``on_checkpoint(result)`` runs every
    ``checkpoint_every`` steps (0: never) with a result whose ``train_state()`` resumes it.
    """
    config = DistillConfig(steps=steps, method=method, **options)
    device = check_device(device)
    if backend not in DISTILL_BACKENDS:
        raise ValueError(f"distill runs on backend {' or '.join(DISTILL_BACKENDS)}, not {backend!r}")
    teacher, teacher_schedule, provenance, teacher_dataset = _teacher(teacher, device)
    schedule = schedule or teacher_schedule or make_schedule(teacher.config.n_steps)
    check_model_steps(teacher, schedule.n_steps)
    teacher = _frozen_copy(teacher).to(device)  # the caller's model stays where it is, as it is
    schedule = schedule.to(device)
    provenance["sha256"] = tensors_sha256(teacher.state_dict().values())
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    student.tuned_grids, student.student_plan = {}, None
    targets = _make_targets(config, teacher, schedule, device, teacher_dataset)
    result = DistillResult(student, schedule, config, provenance, targets.describe(),
                           losses=torch.zeros(config.total_iterations, device=device), device=str(device),
                           backend=backend)
    result.method_details["method_description"] = describe_method(config)
    if resume is not None:
        saved_student, state = resume
        _resume_into(result, targets, _check_resume(state, config, provenance, device, backend), saved_student,
                     teacher)
    _run(result, targets, teacher, progress, should_stop, on_checkpoint, checkpoint_every)
    student.eval()
    return result
