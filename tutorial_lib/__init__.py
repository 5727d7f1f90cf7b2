"""Triplet Mining, Hands-On: the library behind the notebooks.

Modules follow the concepts of the series: ``distances``, ``masks``, ``losses`` (the core, torch only),
``reference`` (naive loops), ``st_losses`` (sentence-transformers loss modules), ``data``, ``models``, ``training``,
``evaluation``, ``viz``, ``widgets``, ``exercises``, ``bench``. Importing this package does no work: import the
module you need (``from tutorial_lib import losses``).
"""

__version__ = "0.1.0"
