"""Repo-level pytest settings only.

The Genie plugin itself is installed as the ``pytest11`` entry point ``genie``
(see pyproject.toml), so it works the same from a clone and from a wheel.
``pytester`` drives the plugin's own tests.
"""

pytest_plugins = ["pytester"]
