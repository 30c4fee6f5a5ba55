"""semattack-bench: semantic-aware multi-label adversarial attacks, benchmarked."""

__version__ = "0.1.0"
