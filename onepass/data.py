"""``onepass.data`` is :mod:`dmft.data`, the data descriptions shared by both packages
(spectra, Gaussian mixtures, teacher-student data, spectral groups): the same module
object under the name the one-pass documentation uses."""
import sys

from dmft import data

sys.modules[__name__] = data
