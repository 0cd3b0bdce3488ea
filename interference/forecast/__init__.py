"""Forecast, before fine-tuning, which known facts an SFT set will break (issue 10).

Per watched (held-out known) fact, features from the base model and the SFT set alone
(``features``, ``gradients``), combined by a logistic regression fitted on other seeds
(``combine``); scored against real forgetting by ``evaluate``; ``api`` is the user-facing entry
(``forecast_run``, ``forecast_for_fact``); ``python -m interference.forecast`` the CLI.
"""
from interference.forecast.api import Forecast, forecast_for_fact, forecast_run

__all__ = ["Forecast", "forecast_for_fact", "forecast_run"]
