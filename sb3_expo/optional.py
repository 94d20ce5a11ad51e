"""Optional dependencies: imported only when a feature needs them, with an error that names the pip extra."""

import importlib
from types import ModuleType


def import_optional(name: str, extra: str) -> ModuleType:
    """
    Import a module of one of sb3_expo's optional extras, so that ``import sb3_expo`` works without it.

    :param name: module to import (``minari``, ``h5py``, ``gymnasium_robotics``, ...)
    :param extra: the pip extra that installs it (``offline``, ``robotics``)
    :return: the module
    :raises ImportError: the module is missing; the message says which extra to install
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"This feature needs the '{name}' package, which is not installed. "
            f'Install the {extra} extra: pip install "sb3_expo[{extra}]"'
        ) from error
