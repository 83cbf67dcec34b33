"""Training methods against exposure bias, each a small class registered by name.

`base` holds the registry and the `Method` base class with its hooks; every other module of this
package holds one method and registers it on import (all are imported here, whatever their
number). A spec names a method as `name` or `{name: {param: value}}`.
"""

import importlib
import pkgutil

from .base import (METHODS, Method, ParamError, StepContext, available, get_method, inner_grad, register,  # noqa: F401
                   validate_method)

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")
