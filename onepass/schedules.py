"""``onepass.schedules`` is :mod:`dmft.schedules`, the learning-rate schedules of the shared
core: the same module object under the name the one-pass documentation uses."""
import sys

from dmft import schedules

sys.modules[__name__] = schedules
