"""Test-time front end: ``check()``, the pytest plugin and its baseline.

``leak`` (what a check finds), ``check`` (the scope), ``leak_report`` (the
failure message), ``baseline`` (accepted leaks), ``pytest_plugin``. May
import every layer below; never ``cli``.
"""
