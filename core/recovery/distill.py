"""The recovery training loop: a pruned student learns the dense teacher's sentence embeddings, on CPU.

Teacher: the dense model (no grad). Student: a copy whose selected Linear layers carry keep-masks. Masks are
recomputed at the schedule's steps with the request's method (magnitude scores or block norms of the
student's current weights; m:n and data-aware methods set them once, before training) and HELD: masked
gradients are zeroed before every optimizer step and the masks are applied again after it, so a pruned
weight stays exactly zero.

Loss: ``cosine_weight * (1 - cos(student embedding, teacher embedding))`` on the mean-pooled, normalised
embeddings ``core.fidelity`` scores, plus ``hidden_weight *`` the mean over layers of each hidden state's MSE
(real tokens only) divided by the teacher's mean square there, plus ``relation_weight *`` the MSE of the
in-batch similarity matrices, plus ``attention_weight *`` the KL divergence of the self-attention maps.
AdamW, linear warmup, cosine decay to 10% of the peak rate over the run (its clock, when budgeted by time).

The run stops at the time budget (or at ``steps``). A checkpoint (student, optimizer, step, masks, schedule,
time spent) is written every ``CHECKPOINT_STEPS`` steps or ``CHECKPOINT_SECONDS``, in one ``os.replace`` of a
finished, fsynced file, so a cancel (``core.jobs.JobCancelled`` from SIGTERM or from progress) leaves the last
checkpoint whole, and ``resume`` continues it: same step count, the rest of the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.fidelity import mean_pool
from core.jobs import NO_PROGRESS, Progress
from core.pruning.apply import PruneConfig, plan
from core.pruning.methods import get_method
from core.recovery.request import RecoveryRequest
from core.recovery.schedule import PolynomialSchedule

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_STEPS = 200
CHECKPOINT_SECONDS = 60.0
PROBE_STEPS = 3  # steps timed before a clock-budgeted run first fits its sparsity schedule to the budget
SAFETY = 0.9  # a clock-budgeted schedule is fitted to this share of the steps the budget seems to allow
MASK_UPDATES = 16  # about this many mask updates over the schedule when ``frequency`` is automatic
MIN_LR_SHARE = 0.1


@dataclass
class TrainResult:
    steps: int
    seconds: float  # training time, over every resumed part
    final_loss: float | None
    schedule: dict
    total_steps: int
    sparsity: float  # the masks' sparsity over the selected layers at the end
    resumed_from: int = 0  # the step the run continued from (0: a fresh start)
    forced_final: bool = False  # the budget ended before the schedule did: the final masks were set at the end
    losses: list = field(default_factory=list)  # (step, loss) of every step

    def summary(self) -> dict:
        return {"steps": self.steps, "minutes": round(self.seconds / 60.0, 2), "final_loss": self.final_loss,
                "schedule": self.schedule, "total_steps": self.total_steps, "sparsity": self.sparsity,
                "resumed_from": self.resumed_from, "forced_final": self.forced_final}


# ------------------------------------------------------------------------------------------------- masks
def compute_masks(layers: dict, config: PruneConfig, sparsity: float) -> dict:
    """Keep-masks of ``layers`` ({name: Linear}) at ``sparsity`` by ``config``'s method, from current weights."""
    from dataclasses import replace

    import torch

    method = get_method(config.method)
    if method.needs_calibration or method.sets_own_sparsity:  # one-shot: the zeros already there are the mask
        return {name: module.weight.detach() != 0 for name, module in layers.items()}
    if sparsity <= 0:
        return {name: torch.ones_like(module.weight, dtype=torch.bool) for name, module in layers.items()}
    weights = [module.weight.detach() for module in layers.values()]
    masks = method.keep_masks(weights, replace(config, sparsity=float(sparsity)))
    return dict(zip(layers, masks))


def apply_masks(layers: dict, masks: dict) -> None:
    """Zero the masked weights of ``layers``; ``masks`` are keep-masks, bool or (faster) ``mask_factors``."""
    import torch

    with torch.no_grad():
        for name, module in layers.items():
            module.weight.mul_(masks[name])


def mask_factors(layers: dict, masks: dict) -> dict:
    """The keep-masks as 0/1 tensors of each weight's dtype: multiplying by a bool mask converts it on every call
    (MiniLM training profile: a copy per Linear per step, twice, on top of the multiplication)."""
    return {name: masks[name].to(module.weight.dtype) for name, module in layers.items()}


def dropout_off(model) -> None:
    """No dropout anywhere in ``model``, in training mode too: ``nn.Dropout`` modules, and the rates attention
    layers keep as plain numbers for ``scaled_dot_product_attention`` (transformers' SDPA attention reads
    ``dropout_prob`` / ``attention_dropout`` while training, whatever the Dropout modules say; until session 12 the
    student trained with BERT's attention dropout of 0.1 while the teacher ran without)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("dropout_prob", "attention_dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


def attention_backend(bf16: bool):
    """The scaled-dot-product-attention backend for training under bf16 autocast: the composite ("math") one.
    PyTorch 2.13's CPU flash kernel in bf16 without dropout took 6.9 ms per forward and backward at MiniLM's
    training shapes (16 x 12 heads x 32 tokens x 32), the math backend 2.2 ms, fp32 flash 1.0 ms (2 threads, Xeon
    VM with AMX); with dropout 0.1 the flash kernel took 3.4 ms, which had hidden it while the student trained with
    attention dropout. Without bf16 the default choice stands."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH) if bf16 else contextlib.nullcontext()


def adamw(parameters: list, lr: float):
    """AdamW without weight decay; the fused CPU kernel where this torch has it (one pass over every parameter
    instead of five small ops per tensor)."""
    import torch

    try:
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0, foreach=True)


def mask_sparsity(masks: dict) -> float:
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


# ------------------------------------------------------------------------------------------------- text
def batch_texts(sentences: list[str], step: int, batch: int, seed: int, augment: float) -> list[str]:
    """Step ``step``'s sentences: a seeded shuffle per pass over the text, a share of them altered. The same
    step always gets the same batch, so a resumed run sees what an uninterrupted one would have."""
    per_epoch = max(1, len(sentences) // batch)
    epoch, index = divmod(step, per_epoch)
    order = list(range(len(sentences)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    chosen = [sentences[i] for i in order[index * batch:(index + 1) * batch]]
    rng = random.Random(seed * 7_919 + step)
    return [_augment(s, sentences, rng) if rng.random() < augment else s for s in chosen]


def _augment(sentence: str, sentences: list[str], rng: random.Random) -> str:
    words = sentence.split()
    kind = rng.random()
    if kind < 0.4:  # join with another sentence: longer inputs, new contexts
        return f"{sentence} {rng.choice(sentences)}"
    if kind < 0.8 and len(words) > 3:  # drop some words
        kept = [w for w in words if rng.random() > 0.15]
        return " ".join(kept or words)
    start = rng.randrange(len(words))  # a rotated span: unusual orders the teacher still answers
    return " ".join(words[start:] + words[:start])


# ------------------------------------------------------------------------------------------------- loss
def distill_loss(student_out, teacher_out, attention_mask, request: RecoveryRequest):
    """(loss tensor, its parts as floats)."""
    s_hidden = [h.float() for h in student_out.hidden_states]  # bf16 under autocast: the loss is float32
    t_hidden = [h.float() for h in teacher_out.hidden_states]
    s_emb, t_emb = mean_pool(s_hidden[-1], attention_mask), mean_pool(t_hidden[-1], attention_mask)
    parts = {}
    loss = 0.0
    if request.cosine_weight:
        cosine = 1.0 - (s_emb * t_emb).sum(dim=-1).mean()
        loss = loss + request.cosine_weight * cosine
        parts["cosine"] = float(cosine.detach())
    if request.hidden_weight:
        real = attention_mask.bool()
        terms = []
        for s, t in zip(s_hidden[1:], t_hidden[1:]):  # every block's output (the embeddings are not pruned)
            t_real = t[real]
            terms.append((s[real] - t_real).pow(2).mean() / t_real.pow(2).mean().clamp(min=1e-6))
        hidden = sum(terms) / len(terms)
        loss = loss + request.hidden_weight * hidden
        parts["hidden"] = float(hidden.detach())
    if request.relation_weight:
        relation = (s_emb @ s_emb.T - t_emb @ t_emb.T).pow(2).mean()
        loss = loss + request.relation_weight * relation
        parts["relation"] = float(relation.detach())
    if request.attention_weight:
        attention = attention_kl(student_out.attentions, teacher_out.attentions, attention_mask)
        loss = loss + request.attention_weight * attention
        parts["attention"] = float(attention.detach())
    return loss, parts


def attention_kl(student_maps, teacher_maps, attention_mask):
    """Mean over layers, heads and real query tokens of KL(teacher row || student row) of the attention
    distributions ([batch, heads, query, key] each; padded keys hold ~0 in both, and are left out)."""
    real = attention_mask.bool()  # [batch, tokens]
    keys = real[:, None, None, :]
    terms = []
    for s, t in zip(student_maps, teacher_maps):
        s, t = s.float(), t.float()
        kl = (t * (t.clamp(min=1e-8).log() - s.clamp(min=1e-8).log())).masked_fill(~keys, 0.0).sum(dim=-1)
        rows = real[:, None, :].expand_as(kl)  # [batch, heads, query]
        terms.append(kl[rows].mean())
    return sum(terms) / len(terms)


def learning_rate(request: RecoveryRequest, done: float) -> float:
    """The rate when ``done`` (0..1) of the run is behind: linear warmup over ``request.warmup``, then cosine decay
    to ``MIN_LR_SHARE`` of the peak at the end.

    A clock-budgeted run measures ``done`` on the clock, not in steps fitted from a probe. Session 12's 15-minute
    80% 16x1 run fitted 5,126 steps from its first (slow) steps, ran 7,237, and spent the last 29% of its
    budget at the floor rate."""
    if done < request.warmup:
        return request.lr * max(done / request.warmup, 0.01)
    done = min(1.0, (done - request.warmup) / max(1e-9, 1.0 - request.warmup))
    return request.lr * (MIN_LR_SHARE + (1 - MIN_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * done)))


def run_fraction(request: RecoveryRequest, step: int, seconds: float) -> float:
    """The share of the run behind: whichever of the step cap and the clock budget is nearer its end."""
    by_steps = step / request.steps if request.steps else 0.0
    return min(1.0, max(by_steps, seconds / (request.minutes * 60.0)))


# ------------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temp file beside it, fsynced, renamed over it, dir fsynced."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(temp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict | None:
    import torch

    path = Path(path)
    for stray in path.parent.glob(f".{path.name}.tmp-*"):  # a write the process was killed in the middle of
        stray.unlink(missing_ok=True)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


# ------------------------------------------------------------------------------------------------- training
def _fit_schedule(request: RecoveryRequest, total_steps: int) -> PolynomialSchedule:
    sparsity = request.target_sparsity
    if request.one_shot:
        return PolynomialSchedule.one_shot(sparsity)
    end = max(1, round(request.end_fraction * total_steps))
    frequency = request.frequency or max(1, end // MASK_UPDATES)
    return PolynomialSchedule(0.0, sparsity, 0, end, 3.0, frequency)


def _budget_steps(step: int, spent: float, budget: float, since: tuple[int, float] | None) -> int:
    """The steps a clock budget seems to allow: those done, plus ``SAFETY`` x the seconds left at the pace since
    ``since`` (the step and seconds of the last fit; the whole run's pace before the first).

    Fitted once from the first three steps, which run slower than the rest, the 80% unstructured run of session
    13 planned 2,997 steps, ran 5,168 and reached its target sparsity at 41% of the run instead of 70%."""
    first_step, first_spent = since or (0, 0.0)
    pace = (spent - first_spent) / max(1, step - first_step)
    return max(step + 1, step + round(SAFETY * max(0.0, budget - spent) / max(pace, 1e-9)))


def train(request: RecoveryRequest, student, teacher, tokenizer, checkpoint: Path | None = None,
          progress: Progress = NO_PROGRESS) -> TrainResult:
    """Train ``student`` (already pruned if the method is one-shot) towards ``teacher`` in place."""
    import torch

    torch.set_num_threads(request.threads)
    torch.manual_seed(request.seed)
    config = request.prune_config()
    layers = plan(student, config)
    sentences = request.sentences()
    request.check_text(sentences)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student.train()
    dropout_off(student)
    if not request.train_embeddings:  # unpruned, and half of MiniLM's weights: Adam over them costs a lot
        for module in student.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.requires_grad_(False)
    optimizer = adamw([p for p in student.parameters() if p.requires_grad], request.lr)
    budget = request.minutes * 60.0

    bf16 = request.uses_bf16  # read the CPU once, not twice per step
    maps = bool(request.attention_weight)  # attention maps only when the loss uses them (eager attention)

    @contextlib.contextmanager
    def autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), attention_backend(bf16):
            yield

    state = load_checkpoint(checkpoint) if checkpoint is not None and request.resume else None
    if state is not None:
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        masks, step, spent = state["masks"], state["step"], state["seconds"]
        schedule = PolynomialSchedule.from_config(state["schedule"]) if state["schedule"] else None
        total_steps, losses = state["total_steps"], state["losses"]
        resumed_from = step
    else:
        masks = compute_masks(layers, config, request.target_sparsity if request.one_shot else 0.0)
        step, spent, schedule, losses, resumed_from = 0, 0.0, None, [], 0
        total_steps = request.steps or 0
        if total_steps:
            schedule = _fit_schedule(request, total_steps)
    factors = mask_factors(layers, masks)
    apply_masks(layers, factors)

    def snapshot() -> dict:
        return {"student": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "masks": masks, "schedule": schedule.get_config() if schedule else None, "total_steps": total_steps,
                "seconds": spent, "losses": losses, "aimed": aimed, "request": request.key_params()}

    started, last_save, last_loss, sparsity = time.monotonic(), time.monotonic(), None, mask_sparsity(masks)
    aimed = request.target_sparsity if request.one_shot else (state or {}).get("aimed", 0.0)
    base_spent, fitted_at = spent, None
    while True:
        spent = base_spent + time.monotonic() - started
        if (request.steps and step >= request.steps) or spent >= budget:
            break
        # a clock-budgeted run fits its schedule after the probe steps, then again at every mask update
        refit = not request.steps and step >= PROBE_STEPS and (
            schedule is None or (step < schedule.end_step and schedule.should_update(step)))
        if refit:
            total_steps = _budget_steps(step, spent, budget, fitted_at)
            schedule, fitted_at = _fit_schedule(request, total_steps), (step, spent)
        if schedule is not None and (refit or schedule.should_update(step)) and not request.one_shot:
            aimed = max(aimed, schedule.sparsity(step))  # a later end never gives pruned weights back
            masks = compute_masks(layers, config, aimed)
            factors = mask_factors(layers, masks)
            apply_masks(layers, factors)
            sparsity = mask_sparsity(masks)
        texts = batch_texts(sentences, step, request.batch, request.seed, request.augment)
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=request.seq_len, return_tensors="pt")
        rate = learning_rate(request, run_fraction(request, step, spent))
        for group in optimizer.param_groups:
            group["lr"] = rate
        with torch.no_grad(), autocast():
            teacher_out = teacher(**inputs, output_hidden_states=True, output_attentions=maps)
        with autocast():
            student_out = student(**inputs, output_hidden_states=True, output_attentions=maps)
        loss, _parts = distill_loss(student_out, teacher_out, inputs["attention_mask"], request)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, module in layers.items():
            if module.weight.grad is not None:
                module.weight.grad.mul_(factors[name])
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        apply_masks(layers, factors)
        step += 1
        last_loss = float(loss.detach())
        losses.append((step, round(last_loss, 5)))
        spent = base_spent + time.monotonic() - started
        progress(run_fraction(request, step, spent), f"step {step}, loss {last_loss:.4f}, sparsity {sparsity:.2f}")
        if checkpoint is not None and (step % CHECKPOINT_STEPS == 0
                                       or time.monotonic() - last_save >= CHECKPOINT_SECONDS):
            save_checkpoint(checkpoint, snapshot())
            last_save = time.monotonic()
    forced = False
    if aimed < request.target_sparsity:  # the clock ran out before the schedule did
        masks = compute_masks(layers, config, request.target_sparsity)
        apply_masks(layers, masks)
        sparsity, forced, aimed = mask_sparsity(masks), True, request.target_sparsity
    if schedule is None:
        schedule = _fit_schedule(request, max(1, step))
    if checkpoint is not None:
        save_checkpoint(checkpoint, snapshot())
    student.eval()
    return TrainResult(steps=step, seconds=spent, final_loss=last_loss, schedule=schedule.get_config(),
                       total_steps=total_steps, sparsity=sparsity, resumed_from=resumed_from, forced_final=forced,
                       losses=losses)
