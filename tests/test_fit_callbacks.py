"""Issue #33 step 4: ``fit`` is a small loop; objectives are pure losses; everything else is a callback (early
stopping, the epoch and its mean logs, GECO's multiplier update by default, schedulers, checkpoints)."""

import inspect
import math

import pytest
import torch

from gpytorch_vae import GECO, GECOObjective, fit
from gpytorch_vae.objectives import Objective, ObjectiveTerms, ScaledLossOptimizer
from gpytorch_vae.training import Callback, Checkpoint, GECOUpdate, Scheduler, load_checkpoint
from reference import geco_step_by_hand, tiny_vae


class Quadratic(Objective):
    """``(w - target)^2`` with a logged ``target``: known per-step values."""

    def __init__(self):
        super().__init__(torch.nn.Linear(1, 1, bias=False), None)

    def forward(self, target):
        loss = (self.model.weight.sum() - target).square()
        terms = ObjectiveTerms(loss)
        terms.logged = lambda: {"loss": loss.detach(), "target": target}
        return terms


class Record(Callback):
    def __init__(self, stop_after=None):
        self.seen, self.stop_after = [], stop_after

    def on_epoch_end(self, state, logs):
        self.seen.append((state.epoch, dict(logs)))
        if state.epoch == self.stop_after:
            state.stop = True


def test_fit_has_at_most_eight_keyword_arguments_and_objectives_are_pure_losses():
    keywords = [p for p in inspect.signature(fit).parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert len(keywords) <= 8, [p.name for p in keywords]
    assert not hasattr(Objective, "prepare_optimizer") and not hasattr(Objective, "step")


def test_callbacks_get_the_epoch_and_its_mean_logs_and_can_stop_the_run(tmp_path):
    batches = [(torch.tensor(1.0),), (torch.tensor(4.0),)]
    record = Record(stop_after=2)
    path = str(tmp_path / "ckpt.pt")
    result = fit(Quadratic(), batches, epochs=5, lr=1e-2, callbacks=[record, Checkpoint(path)], progress=False)
    assert [epoch for epoch, _ in record.seen] == [1, 2]
    assert all(logs["target"] == 2.5 for _, logs in record.seen)  # the mean of 1 and 4
    steps = result.state.period_logs  # the last epoch's two steps: its mean is what the callback got
    assert record.seen[-1][1]["loss"] == math.fsum(log["loss"] for log in steps) / 2
    assert len(result.losses) == 2 and result.state.step == 4
    assert load_checkpoint(path)["epoch"] == 2  # the stopping epoch is checkpointed
    resumed = Record()
    fit(Quadratic(), batches, epochs=3, lr=1e-2, callbacks=[resumed, Checkpoint(path, resume=True)], progress=False)
    assert [epoch for epoch, _ in resumed.seen] == [3]


def test_fit_steps_geco_exactly_as_a_loop_of_its_own():
    """fit's default GECOUpdate = ScaledLossOptimizer.step(e) then GECO.update() after each step, bit for bit."""
    x = torch.linspace(0, 1, 12).unsqueeze(-1)
    y = torch.rand(12, 2, generator=torch.Generator().manual_seed(0))

    def run(by_fit: bool):
        torch.manual_seed(0)
        vae = tiny_vae(data_dim=2, latent_dim=2)
        objective = GECOObjective(vae, None, GECO(kappa2=1e-4, alpha=0.5))
        adam = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=1e-1)
        if by_fit:
            fit(objective, [(x, y)] * 4, epochs=2, optimizer=adam, progress=False)
        else:
            scaled = ScaledLossOptimizer(adam)
            for _ in range(8):
                geco_step_by_hand(objective, objective.geco, scaled, x, y)
        return objective.state_dict(), adam.param_groups[0]["eps"]

    (by_fit, eps_fit), (by_hand, eps_hand) = run(True), run(False)
    assert by_fit["geco.log_lagrange_multiplier"] > 0  # lambda grew: the constraint was never met
    assert eps_fit == eps_hand and eps_fit < 1e-8  # Adam's eps follows the loss scale 2^-e
    for key, value in by_hand.items():
        assert torch.equal(by_fit[key], value), key


def test_a_given_geco_update_is_not_doubled_and_its_state_is_checkpointed(tmp_path):
    x, y = torch.linspace(0, 1, 8).unsqueeze(-1), torch.rand(8, 2, generator=torch.Generator().manual_seed(1))
    objective = GECOObjective(tiny_vae(data_dim=2, latent_dim=2), None, GECO(kappa2=0.0))
    update = GECOUpdate(objective.geco)
    path = str(tmp_path / "ckpt.pt")
    result = fit(objective, [(x, y)], epochs=3, lr=1e-2, callbacks=[update, Checkpoint(path)], progress=False)
    # a second GECOUpdate would call GECO.update() twice per step, which raises (no loss in between)
    assert result.state.step == 3
    assert update.scaled.exponent > 0  # lambda grew past 2: Adam's moments were rescaled
    assert load_checkpoint(path)["state"]["GECOUpdate"] == update.state_dict()


def test_a_scheduler_callback_steps_per_epoch_and_resumes(tmp_path):
    path = str(tmp_path / "ckpt.pt")

    def make(resume=False):
        scheduler = Scheduler(lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5))
        return scheduler, [scheduler, Checkpoint(path, resume=resume)]

    scheduler, callbacks = make()
    fit(Quadratic(), [(torch.tensor(1.0),)], epochs=2, lr=1.0, callbacks=callbacks, progress=False)
    assert scheduler.scheduler.get_last_lr() == [0.25]
    scheduler, callbacks = make(resume=True)
    result = fit(Quadratic(), [(torch.tensor(1.0),)], epochs=3, lr=1.0, callbacks=callbacks, progress=False)
    assert scheduler.scheduler.get_last_lr() == [0.125] and result.optimizer.param_groups[0]["lr"] == 0.125


def test_fit_refuses_what_is_not_a_callback():
    with pytest.raises(TypeError, match="Callback"):
        fit(Quadratic(), [(torch.tensor(1.0),)], epochs=1, callbacks=[lambda state: None], progress=False)
