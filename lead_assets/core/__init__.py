"""The pure core: schema, cleaning, features, model, scoring; it imports no Dagster.

Grouped by stage, each subpackage saying what it owns and what it may import; a stage imports
only the foundation (``schema``, ``clock``) and the stages below it
(``lead_assets_tests/test_definitions.py`` holds the rule):

    schema, clock < store < inbox < leads < model < scoring < release < outcomes

Models pickled before the stages existed name ``lead_assets.core.cutoff`` and
``lead_assets.core.registry`` (and ``lead_assets.core.model``, now the model stage, which answers
for its ``recipe``): the finder below lets every registered version and cached pickle load.
"""

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {"lead_assets.core.cutoff": "lead_assets.core.model.cutoff",
         "lead_assets.core.registry": "lead_assets.core.release.registry"}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An old module path resolves to the module that now holds its code (imported when asked for)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        return None


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
