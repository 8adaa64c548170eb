"""Weights for every task's ``pretrained`` / ``init_weights``: local files and folders
(:mod:`kagglekit.weights.local`, names mapped by :mod:`kagglekit.weights.keys`) and tags fetched and
cached the way timm / torchvision / SMP do (:mod:`kagglekit.weights.resolve`)."""
from kagglekit.weights.keys import best_key_map, feature_name, plain_names
from kagglekit.weights.local import (DEFAULT_MIN_MATCH, DEFAULT_PREFIXES, WRAPPER_KEYS, LoadReport, as_state_dict,
                                     find_weights_file, load_matching, read_state_dict)
from kagglekit.weights.resolve import (PretrainedUnavailable, any_pretrained, is_off, load_pretrained, resolve_pretrained,
                                       resolve_source)

__all__ = ["DEFAULT_MIN_MATCH", "DEFAULT_PREFIXES", "WRAPPER_KEYS", "LoadReport", "PretrainedUnavailable",
           "any_pretrained", "as_state_dict", "best_key_map", "feature_name", "find_weights_file", "is_off",
           "load_matching", "load_pretrained", "plain_names", "read_state_dict", "resolve_pretrained", "resolve_source"]
