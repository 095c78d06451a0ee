"""Other tools' formats.

Reading: ``load_model(path)`` (a TransformerLens one-layer folder, ``transformer_lens.py``, or a
superpos bundle) returns the project's ``OneLayerTransformer``; ``load_tokenizer(path)`` its
tokenizer; ``load_sae(path)`` (SAELens, dictionary_learning, sparsify, Neel Nanda's 1L SAE files, a
bundle or a superpos SAE file; ``sae_formats.py``) the project's ``SparseAutoencoder``.
Writing: ``saelens`` writes a bundle's SAE as a SAELens folder; ``neuronpedia`` turns dashboards into
Neuronpedia / SAE-Dashboard feature JSON.
"""

from __future__ import annotations

from pathlib import Path

from engine.interop.files import InteropError

__all__ = ["load_model", "load_tokenizer", "load_sae", "InteropError"]

BUNDLE_SUFFIXES = (".h5", ".hdf5")


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InteropError(f"{path}: no such file or folder")
    return path


def load_model(path):
    """The one-layer transformer at ``path`` (``engine.model.OneLayerTransformer``, eval mode, CPU)."""
    path = _existing(path)
    if path.suffix in BUNDLE_SUFFIXES:
        from engine.bundle import open_bundle

        with open_bundle(path) as b:
            return b.load_model()
    from engine.interop.transformer_lens import load_tl_model

    return load_tl_model(path)


def load_tokenizer(path, model_path=None):
    """The tokenizer for a model: ``path`` is a ``tokenizer.json`` (HF ``tokenizers`` format), a folder
    holding one, or a bundle; ``model_path`` names the model in the message when none is found."""
    from engine.inputs import regular_file
    from engine.data.tokenizer import Tokenizer

    path = _existing(path)
    if path.suffix in BUNDLE_SUFFIXES:
        from engine.bundle import open_bundle

        with open_bundle(path) as b:
            return b.tokenizer()
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise InteropError(f"{model_path or path} has no tokenizer.json; put the model's tokenizer.json (HF "
                           "tokenizers format, e.g. from its Hugging Face repository) next to the weights, "
                           "or give it with --tokenizer PATH")
    regular_file(file, InteropError, "tokenizer.json")
    return Tokenizer.load(file)


def load_sae(path):
    """The SAE at ``path`` as ``engine.sae.SparseAutoencoder`` (encode/decode as its library's)."""
    from engine.interop.sae_formats import load_sae_any

    return load_sae_any(_existing(path))
