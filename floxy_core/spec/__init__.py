"""Workflow files: YAML text → validated document → `WorkflowFile`."""

from __future__ import annotations

import os

from floxy_core.model import WorkflowFile


def load_workflow_file(
    path: str | os.PathLike[str], *, require_handlers: bool = True
) -> WorkflowFile:
    """Load, validate and compile a workflow file; raises `ValidationError` with every problem."""
    from floxy_core.spec.compiler import compile_document
    from floxy_core.spec.loader import load_file

    return compile_document(load_file(path, require_handlers=require_handlers))


def load_workflow_text(text: str, path: str = "<string>") -> WorkflowFile:
    from floxy_core.spec.compiler import compile_document
    from floxy_core.spec.loader import load_document

    return compile_document(load_document(text, path))


__all__ = ["load_workflow_file", "load_workflow_text"]
