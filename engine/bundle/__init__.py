"""The result bundle: one HDF5 file holding a whole run — configs, tokenizer, model, SAE, statistics.

Layout (docs/bundle-format.md is the full reference; this is the map):

    /                      attrs format="superpos-bundle", schema_version, created, generator,
                           versions (JSON), extra_info (JSON)
    /config                JSON of RunConfig.to_dict()
    /tokenizer             tokenizer.json text
    /metrics               JSON of the evaluation metrics
    /model/<param>         the OneLayerTransformer state dict, float32; attr config (ModelConfig JSON)
    /sae/{W_enc,b_enc,W_dec,b_dec}   SAELens orientation, float32; attr config (SAEConfig JSON)
    /features/<column>     UnitStats columns for the N_f features   (chunked along the unit axis)
    /neurons/<column>      UnitStats columns for the N_n neurons
    /curves/<stage>/<name> (n, 2) float64 training curves (x, value)
    /density_hist/{edges,counts}
    /sample/{token_ids,neuron_acts,feature_indptr,feature_token,feature_value}
    /harvest               attrs n_tokens, top_center, config (HarvestConfig JSON)

Which module holds what:

    schema.py    FORMAT, SCHEMA_VERSION, the column / storage-dtype / chunking tables, the model's
                 expected shapes, token storage encode-decode, BundleError and the caller errors,
                 and the guarded open (signature, format and schema checks) every reader uses
    write.py     BundleWriter, write_bundle_job (progress + cancel), write_bundle; atomic through
                 engine.fileio (temporary file, fsync, rename)
    validate.py  open-time validation of the metadata (no bulk reads)
    read.py      open_bundle and Bundle: metadata at open, everything else sliced on demand;
                 FamilyMembers: a family's other dictionaries, each opened once
    sae_file.py  the /sae group and the standalone SAE file: write_sae_file, read_sae, load_sae_file

No pickle, no eval: only numbers, strings and JSON. The SAELens export lives in engine.interop.saelens.
"""

from engine.bundle.read import Bundle, FamilyMembers, open_bundle
from engine.bundle.sae_file import load_sae_file, read_sae, write_sae_file
from engine.bundle.schema import (
    FORMAT, SAE_FORMAT, SAE_KEYS, SCHEMA_VERSION, TOKEN_PAD_I32, TOKEN_PAD_U16, BundleError,
    UnitIndexError, UnitKindError, expected_model_shapes, token_storage_dtype,
)
from engine.bundle.write import BundleWriter, write_bundle, write_bundle_job

__all__ = [
    "SCHEMA_VERSION", "FORMAT", "SAE_FORMAT", "SAE_KEYS", "TOKEN_PAD_U16", "TOKEN_PAD_I32",
    "BundleError", "UnitKindError", "UnitIndexError", "expected_model_shapes",
    "token_storage_dtype", "Bundle", "FamilyMembers", "open_bundle", "BundleWriter", "write_bundle", "write_bundle_job",
    "write_sae_file", "read_sae", "load_sae_file",
]
