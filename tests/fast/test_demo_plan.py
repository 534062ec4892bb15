"""The demo's training plan: the full recipe only where training runs in bf16, on the clock in float32."""

from convlens.api.demo import FLOAT32_BUDGET_S, plan_training
from convlens.ml.models import get_preset


def test_a_cpu_training_in_float32_trains_on_the_clock():
    plan = plan_training(trains_bf16=False)
    assert plan.train_params == {"preset": "seed", "time_budget_s": FLOAT32_BUDGET_S}
    assert "trains in float32" in plan.note and "\n" not in plan.note


def test_a_cpu_training_in_bf16_trains_the_full_recipe():
    plan = plan_training(trains_bf16=True)
    assert plan.train_params == {"preset": "seed"}
    assert f"{get_preset('seed').recipe['epochs']}-epoch" in plan.note


def test_the_users_choice_wins_over_the_cpu_check():
    assert plan_training(False, limit=2000).train_params == {"preset": "seed", "limit": 2000}
    assert plan_training(True, time_budget_s=30).train_params == {"preset": "seed", "time_budget_s": 30}
