"""Forecast, before fine-tuning, which known facts an SFT set will break (issue 10).

Per watched (held-out known) fact, features from the base model and the SFT set alone
(``features``, ``gradients``), combined by a logistic regression fitted on other seeds
(``combine``); scored against real forgetting by ``evaluate``; ``api`` is the user-facing entry
(``forecast_run``, ``forecast_for_fact``); ``python -m interference.forecast`` the CLI.
"""
__all__ = ["Forecast", "forecast_for_fact", "forecast_run"]


def __getattr__(name: str):
    """The API, imported on first use: ``python -m interference.forecast --help`` then loads no torch."""
    if name in __all__:
        from interference.forecast import api
        return getattr(api, name)
    raise AttributeError(name)
