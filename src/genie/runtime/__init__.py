"""Entry points that run Genie: ``python -m genie.runtime.simple_server``."""
