"""The built-in model families and problems, registered through :mod:`trajlab.registry` exactly as a
user's plug-ins are: every module of this package is imported once (by
:func:`trajlab.registry.load_builtins`) and registers what it defines. A new built-in family or
problem is a new module here and nothing else.
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
