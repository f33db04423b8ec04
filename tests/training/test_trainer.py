"""The trainer (training/trainer.py): batches, one step strategy per optimiser, the checkpoint state."""

from __future__ import annotations

import copy

import pytest
import torch

from aenet_exp.build.training import run_training

from helpers.handmade import N_ATOMS, TRAIN, HandMadeSource, hand_loss, handmade_columns, handmade_potential, handmade_trainer


def test_batchsize_sets_steps_per_epoch(fast_config, tmp_path):
    cfg = fast_config("optimizer.batchsize=5", "iterations=1", "precision=float64")
    counted = []
    from aenet_exp.training.features import FeatureSource

    original = FeatureSource._evaluate

    def counting(self, potential, *args, **kwargs):
        out = original(self, potential, *args, **kwargs)
        if potential.training:
            counted.append(len(out.order))
        return out

    FeatureSource._evaluate = counting
    try:
        run_training(cfg, tmp_path)
    finally:
        FeatureSource._evaluate = original
    assert counted == [5, 5, 2]  # 12 training structures



# ---------------------------------------------------------------------- the trainer on hand-made features


def recorded_steps(optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    """Each step's gradients (clones), recorded as the step begins."""
    steps = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: steps.append([p.grad.clone() for g in opt.param_groups for p in g["params"]]))
    return steps


def weights_of(trainer) -> dict[str, torch.Tensor]:
    return copy.deepcopy(trainer.potential.state_dict())


def test_gradient_steps_step_once_per_batch_along_the_gradient_of_its_loss():
    """8 training structures in batches of 3: three SGD steps, each along the gradient of the loss of the batch's
    errors written out by hand."""
    trainer = handmade_trainer("sgd", batchsize=3, lr=0.1, momentum=0.0)
    steps = recorded_steps(trainer.optimizer)
    before = [weights_of(trainer)]
    trainer.optimizer.register_step_post_hook(lambda *_: before.append(weights_of(trainer)))
    trainer.train_epoch(0)
    batches = list(trainer.source.asked)
    assert [len(b) for b in batches] == [3, 3, 2] and sorted(sum(batches, [])) == list(TRAIN)
    assert len(steps) == 3
    for batch, weights, gradients in zip(batches, before, steps):
        potential = handmade_potential()
        potential.load_state_dict(weights)
        loss = hand_loss(potential, trainer.source, trainer.columns, batch, alpha=0.3)
        expected = torch.autograd.grad(loss, list(potential.networks.parameters()))
        for got, want in zip(gradients, expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_the_full_batch_step_evaluates_the_loss_of_all_structures_pooled_over_batches():
    """L-BFGS in batches of 3 sees the loss and gradient of the 8 training structures as one batch of 8 does, and
    as written out by hand; each evaluation passes every batch."""
    evaluations = {}
    for batchsize in (3, 8):
        trainer = handmade_trainer("lbfgs", batchsize=batchsize, lr=1.0, max_iter=2, history_size=5,
                                   tolerance_grad=0.0, tolerance_change=0.0)
        initial = weights_of(trainer)
        step, found = trainer.optimizer.step, []

        def recorded(closure, step=step, found=found, trainer=trainer):
            def evaluate():
                loss = closure()
                found.append((float(loss), [p.grad.clone() for p in trainer.potential.networks.parameters()]))
                return loss
            return step(evaluate)

        trainer.optimizer.step = recorded
        batches_seen = []
        trainer.train_epoch(0, after_batch=lambda: batches_seen.append(1))
        assert len(batches_seen) == len(found) * (3 if batchsize == 3 else 1)
        evaluations[batchsize] = found
    potential = handmade_potential()
    potential.load_state_dict(initial)
    loss = hand_loss(potential, HandMadeSource(N_ATOMS, 4), handmade_columns(), list(TRAIN), alpha=0.3)
    expected = torch.autograd.grad(loss, list(potential.networks.parameters()))
    (pooled, gradients), (whole, whole_gradients) = evaluations[3][0], evaluations[8][0]
    assert pooled == pytest.approx(loss.item(), rel=1e-12) and whole == pytest.approx(loss.item(), rel=1e-12)
    for got, one_batch, want in zip(gradients, whole_gradients, expected):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-15)
        torch.testing.assert_close(one_batch, want, rtol=1e-11, atol=1e-15)
    assert len(evaluations[3]) >= 2  # the line search evaluated the loss again


def test_kalman_updates_once_per_batch_with_the_batchs_measurements():
    """Batches of 3, 3, 2 structures with forces, in 2 force measurements each: three updates of 5, 5 and 4
    measurements; λ after them is reported."""
    trainer = handmade_trainer("ekf", batchsize=3, lambda0=0.98, nue=0.9, p0=1.0, process_noise=0.0,
                               blocks="species", force_measurements=2)
    step, sizes = trainer.optimizer.step, []

    def measured(values: torch.Tensor) -> torch.Tensor:
        sizes.append(len(values))
        return values

    trainer.optimizer.step = lambda measure: step(lambda: measured(measure()))
    metrics = trainer.train_epoch(0)
    assert sizes == [5, 5, 4]
    assert metrics["train/kalman_lambda"] == pytest.approx(1 - 0.02 * 0.9**3, rel=1e-14)
    assert "train/lr" not in metrics


@pytest.mark.parametrize("optimizer, keys, updates", [
    ("adam", dict(mu=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8), 3),
    ("ekf", dict(lambda0=0.98, nue=0.9, p0=1.0, process_noise=0.0, blocks="layer", force_measurements=1), 3),
    ("lbfgs", dict(lr=1.0, max_iter=3, history_size=5, tolerance_grad=1e-7, tolerance_change=1e-9), 1),
])
def test_the_weight_average_folds_in_the_weights_after_every_step(optimizer, keys, updates):
    trainer = handmade_trainer(optimizer, batchsize=3, ema=0.5, **keys)
    folded = []
    update = trainer.average.update
    trainer.average.update = lambda: folded.append(weights_of(trainer)) or update()
    trainer.train_epoch(0)
    assert len(folded) == updates
    final = {k: v for k, v in trainer.potential.state_dict().items() if k.startswith("networks")}
    assert all(torch.equal(folded[-1][k], v) for k, v in final.items())  # the last fold saw the stepped weights


def test_a_bootstrapped_committee_weighs_each_members_errors_by_its_resample():
    """Members trained on their resamples (``committee.bootstrap``) take other steps than the same members without
    them (the weighted loss itself: tests/training/test_committee.py)."""
    plain = handmade_trainer("sgd", members=2, lr=0.1, momentum=0.0)
    bootstrapped = handmade_trainer("sgd", members=2, bootstrap=True, lr=0.1, momentum=0.0)
    steps = recorded_steps(plain.optimizer), recorded_steps(bootstrapped.optimizer)
    plain.train_epoch(0), bootstrapped.train_epoch(0)
    first_layer = [gradients[0] for gradients in (steps[0][0], steps[1][0])]  # (members, ...) stacked weights
    assert not torch.equal(first_layer[0], first_layer[1])


def test_a_checkpoint_in_the_layout_before_its_keys_were_renamed_continues_identically():
    """The state as the trainer wrote it before ``force_subset`` and ``rng.epoch_order``: ``sampler`` held the force
    subset, ``rng.sampler`` its generator, ``rng.shuffle`` the epoch order's."""
    trainer = handmade_trainer("adam", force_fraction=0.5, mu=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
    trainer.epoch(0)
    state, weights = trainer.state_dict(), weights_of(trainer)
    assert {"force_subset", "sampling"} <= set(state) and set(state["rng"]) == {"torch", "epoch_order"}
    old = {key: value for key, value in state.items() if key != "force_subset"}
    old["rng"] = {"torch": state["rng"]["torch"], "shuffle": state["rng"]["epoch_order"],
                  "sampler": state["force_subset"]["rng"]}
    old["sampler"] = {"selected": state["force_subset"]["selected"], "window": state["force_subset"]["window"]}
    old = copy.deepcopy(old)
    expected = timeless(trainer.epoch(1))
    resumed = handmade_trainer("adam", force_fraction=0.5, mu=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
    resumed.potential.load_state_dict(weights)
    resumed.load_state_dict(old)
    assert timeless(resumed.epoch(1)) == expected
    assert resumed.supervision.selected == trainer.supervision.selected


def timeless(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}
