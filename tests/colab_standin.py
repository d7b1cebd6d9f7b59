"""IPython start-up file for `make test-colab`: Colab's kernel imports google.colab before the first cell runs.

This stand-in is what the set-up cells see offline: a google.colab module with an empty Secrets store.
"""
import sys
import types

import google  # the namespace package that protobuf already installs

colab = types.ModuleType("google.colab")


def _no_secret(name):
    raise KeyError(f"{name}: no such secret in this stand-in for Colab")


colab.userdata = types.SimpleNamespace(get=_no_secret)
google.colab = colab
sys.modules["google.colab"] = colab
