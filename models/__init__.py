"""Deblurring architectures and the registry.

Importing this package registers every model: ``create_model(name, **overrides)``, ``list_models()``.
"""

from models import dbgan as _dbgan  # noqa: F401  (registers)
from models import deblurgan as _deblurgan  # noqa: F401
from models import deblurganv2 as _deblurganv2  # noqa: F401
from models import deepdeblur as _deepdeblur  # noqa: F401
from models import dmphn as _dmphn  # noqa: F401
from models import fftformer as _fftformer  # noqa: F401
from models import hinet as _hinet  # noqa: F401
from models import identity as _identity  # noqa: F401
from models import mimo_unet as _mimo_unet  # noqa: F401
from models import mprnet as _mprnet  # noqa: F401
from models import msfsnet as _msfsnet  # noqa: F401
from models import mtrnn as _mtrnn  # noqa: F401
from models import nafnet as _nafnet  # noqa: F401
from models import pssnsc as _pssnsc  # noqa: F401
from models import restormer as _restormer  # noqa: F401
from models import sdwnet as _sdwnet  # noqa: F401
from models import srn as _srn  # noqa: F401
from models import stripformer as _stripformer  # noqa: F401
from models import svrnn as _svrnn  # noqa: F401
from models._registry import create_model, list_models, register_model
from models.base import DeblurModel, LossTerms, TrainOutput
from models.checkpoint import CheckpointError, load_checkpoint, read_state_dict

__all__ = [
    "CheckpointError",
    "DeblurModel",
    "LossTerms",
    "TrainOutput",
    "create_model",
    "list_models",
    "load_checkpoint",
    "read_state_dict",
    "register_model",
]
