"""Whole-process reports over the model and the analyses.

``dump`` (every task grouped, loss events, object growth, blocked loops: the
"what is this process doing" report) and ``signal_dump`` (that report on a
signal, like faulthandler). The forms of a single snapshot live with the
model (``model/text.py``, ``model/json_form.py``). May import the analysis
layers (``diagnosis``, ``heap``), ``blocking`` and everything below; never a
front end.
"""
