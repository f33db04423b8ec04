"""``python -m aenet_exp``: the command-line entry point."""

import os
import sys


def use_the_installed_package() -> None:
    """Run as the installed package even from the folder above a checkout named ``aenet_exp``.

    There, Python takes the checkout's folder (no ``__init__.py``) for a namespace package
    ``aenet_exp`` that shadows the installed one (an editable install finds only the submodules).
    The command line needs nothing from the working directory: drop it from the path and import again.
    """
    package = sys.modules.get("aenet_exp")
    if package is None or getattr(package, "__file__", None) is not None:
        return
    sys.path[:] = [entry for entry in sys.path if entry not in ("", os.getcwd())]
    for name in [name for name in sys.modules if name == "aenet_exp" or name.startswith("aenet_exp.")]:
        del sys.modules[name]


use_the_installed_package()

from aenet_exp.cli import main  # noqa: E402  (after the path is right)

if __name__ == "__main__":
    main()
