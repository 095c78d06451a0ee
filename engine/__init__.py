"""superpos engine: corpus -> tokenizer -> one-layer transformer -> SAE -> statistics -> bundle.

Pure Python + torch + numpy + h5py. This package never imports Qt.
"""

__version__ = "0.1.0"
