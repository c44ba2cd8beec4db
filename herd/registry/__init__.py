"""Pull and push models from and to an OCI distribution (Docker v2) registry, as Ollama does.

`client` speaks HTTP to one repository (auth included), `download` and `upload` move one blob,
`pull` and `push` do a whole model against a ModelStore and report Ollama's statuses.
"""

from herd.registry.client import RegistryClient, Tuning
from herd.registry.errors import BlobCorrupt, InsecureProtocol, RegistryError
from herd.registry.progress import Progress
from herd.registry.pull import pull_model
from herd.registry.push import push_model

__all__ = [
    "BlobCorrupt",
    "InsecureProtocol",
    "Progress",
    "RegistryClient",
    "RegistryError",
    "Tuning",
    "pull_model",
    "push_model",
]
