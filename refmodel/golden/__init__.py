"""Golden vector sets: $readmemh hex files plus a manifest.

:func:`generate_set` writes one (random weights and input from a seed, the user's own weights and
input files or arrays, or a bundled real model's layer); :func:`verify_set` checks one and rebuilds
it byte for byte; :func:`load_tensor` / :func:`read_manifest` read one.
"""

from .generate import generate_set, verify_set
from .manifest import GoldenTensor, check_files, load_tensor, read_manifest, write_set

__all__ = ["generate_set", "verify_set", "GoldenTensor", "check_files", "load_tensor", "read_manifest", "write_set"]
