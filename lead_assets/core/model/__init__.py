"""Stage 4, model: train and judge. The recipe and the fitted ``LeadModel`` (``recipe``), the junk
cut-off (``cutoff``), monthly backtests (``backtest``), metrics and the promotion gate
(``judging``), training with its tables (``training``), a champion's refit on its own outcomes
(``recalibration``), the model card (``card``), evaluation
plots (``plots``) and the honest evaluation of a labelled file (``file_evaluation``).

May import: the foundation, ``store``, ``inbox`` and ``leads``.
"""



def __getattr__(name: str):
    """``lead_assets.core.model.LeadModel`` (and the rest of the former ``core/model.py``), as models
    pickled before the stages name them: the recipe module's attribute. A submodule of this stage
    is never answered here (the import system then loads it)."""
    import importlib
    import pkgutil

    if name.startswith("__") or name in {m.name for m in pkgutil.iter_modules(__path__)}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    recipe = importlib.import_module(f"{__name__}.recipe")
    try:
        return getattr(recipe, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
