"""MIHO: Contact Potential Field (CPF) hand-object modelling, batched in PyTorch.

A reference implementation of Yang et al., "CPF: Learning a Contact Potential Field to
Model the Hand-Object Interaction" (ICCV 2021). Units are metres throughout the package.
"""

__version__ = "0.1.0"
