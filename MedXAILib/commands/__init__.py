"""One module per CLI command; see :mod:`MedXAILib.cli`."""
