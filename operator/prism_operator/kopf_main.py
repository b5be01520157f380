"""Entry module for `kopf run -m prism_operator.kopf_main`: registers the handlers on kopf's default
registry with the configuration from PRISM_* environment variables (see settings.py)."""

import kopf

from .handlers import register
from .settings import OperatorConfig

runtime = register(kopf.get_default_registry(), OperatorConfig.from_env())
