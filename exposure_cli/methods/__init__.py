"""Training methods against exposure bias, each a small class registered by name.

`base` holds the registry and the `Method` base class with its hooks; each other module holds one
method and registers it on import. A spec names a method as `name` or `{name: {param: value}}`.
"""

from .base import Method, ParamError, StepContext, available, get_method, register, validate_method  # noqa: F401
from . import adversarial, gradient_penalty, random_replace, scheduled_sampling  # noqa: F401  (registration)
