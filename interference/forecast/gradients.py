"""The forecast's gradient features come from ``interference.metrics.gradients``, the package's one
per-fact gradient alignment (moved there so metrics, the localized predictors and the forecast
share it); this module names it for code that imported it from here."""
from interference.metrics.gradients import (  # noqa: F401
    Alignment, Collected, SetGradients, _answer_pos, _apply, _sqnorm, _summed_grad, _unit_order, _with_bias, alignment,
    collect, hooked, linear_modules, per_example_loss, summarise_set, unit_of_module)
