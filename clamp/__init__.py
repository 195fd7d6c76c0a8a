"""clamp: causal interventions on tiny transformers while induction heads form."""

__version__ = "0.1.0"
