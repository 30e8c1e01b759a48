"""bench.testing, the checks for plugin authors: they pass for ltbench's methods and catch broken ones."""

import pytest
import torch

from bench.testing import check_method, state_round_trip, training_step
from methods import Method, get_method


class NanLoss(Method):
    def train_loss(self, out_adv, y, out_clean=None):
        return out_adv.logits.sum() * float("nan")


class ForgetsState(Method):
    """Counts epochs but does not restore the count."""

    def __init__(self, params, class_counts, device="cpu"):
        super().__init__(params, class_counts, device)
        self.seen = torch.zeros(self.num_classes)

    def end_epoch(self, ae_pred_counts):
        self.seen += ae_pred_counts

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        pass


def test_a_non_finite_loss_is_caught():
    with pytest.raises(AssertionError, match="NanLoss.train_loss is not a finite scalar"):
        training_step(NanLoss)


def test_a_state_that_does_not_come_back_is_caught():
    training_step(ForgetsState)
    with pytest.raises(AssertionError, match="ForgetsState: state 'seen' differs"):
        state_round_trip(ForgetsState)


@pytest.mark.parametrize("name", ["robal", "reat"])
def test_stateful_builtin_methods_pass_the_quick_checks(name):
    training_step(get_method(name))
    state_round_trip(get_method(name))


class CountsEpochsInMemory(Method):
    """Scales its loss by the epochs this instance has seen, which a resumed instance does not know."""

    calls = 0

    def begin_epoch(self, epoch, num_epochs):
        self.calls += 1

    def train_loss(self, out_adv, y, out_clean=None):
        return self.calls * super().train_loss(out_adv, y, out_clean)


@pytest.mark.slow
def test_a_resume_that_differs_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="CountsEpochsInMemory: a resumed run's metrics differ"):
        check_method(CountsEpochsInMemory, tmp_path)
