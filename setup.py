"""What pyproject.toml cannot say: the packages, with configs/ shipped inside fedsim.

The ready-made experiment files stay in the repository's top-level ``configs/`` folder (the
product's layout) and travel in the wheel as the package ``fedsim.configs`` mapped onto that
folder, so ``fedsim run quickstart`` finds them in any installation (fedsim/config/shipped.py).
pyproject's ``packages.find`` cannot add a package mapped from another folder, hence this file;
everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["fedsim*", "strategies*", "clients*"]), "fedsim.configs"],
    package_dir={"fedsim.configs": "configs"},
    package_data={"fedsim.configs": ["*.toml"]},
)
