"""Workflow files: YAML text → validated document → `WorkflowFile`."""

from __future__ import annotations

import os

from floxy_core.model import WorkflowFile


def load_workflow_file(
    path: str | os.PathLike[str], *, require_handlers: bool = True
) -> WorkflowFile:
    """Load, validate and compile a workflow file; raises `ValidationError` with every problem.

    A file whose exact bytes were validated before is taken from the cache (`spec/cache.py`).
    """
    from floxy_core.spec import cache
    from floxy_core.spec.compiler import compile_document
    from floxy_core.spec.document import read_source

    name = os.fspath(path)
    raw = read_source(name)
    document = cache.lookup(raw, name, require_handlers)
    if document is not None:
        return compile_document(document)
    from floxy_core.spec.loader import load_source

    document = load_source(raw, name, require_handlers=require_handlers)
    compiled = compile_document(document)
    cache.store(raw, name, require_handlers, document)
    return compiled


def load_workflow_text(text: str, path: str = "<string>") -> WorkflowFile:
    from floxy_core.spec.compiler import compile_document
    from floxy_core.spec.loader import load_document

    return compile_document(load_document(text, path))


__all__ = ["load_workflow_file", "load_workflow_text"]
