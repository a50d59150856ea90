"""Weight files: pretrained files by name with a checksummed downloader (download), and
reading / writing weights by layer name with h5py (by_name).

``from mrcnn.weights import get_weights`` keeps working: the downloader's names are
handed on here.
"""
from mrcnn.weights.download import (REGISTRY, WeightsChecksumError,  # noqa: F401
                                    WeightsEntry, WeightsUnavailable, default_cache_dir,
                                    describe, file_digest, get_weights, register,
                                    unregister, verify_file, weights_path)
