"""Data package: the model registry and the models shipped with histdenoise."""
