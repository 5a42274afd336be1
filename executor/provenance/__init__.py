"""Build provenance: SLSA Provenance v1 in an in-toto Statement v1 (:mod:`.slsa`), with the
build context's tree digest (:mod:`.context_digest`)."""

from .context_digest import context_digest
from .slsa import MEDIA_TYPE, PREDICATE_TYPE, provenance_statement, secret_like

__all__ = ["MEDIA_TYPE", "PREDICATE_TYPE", "context_digest", "provenance_statement", "secret_like"]
