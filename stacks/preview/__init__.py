"""`llmstacks preview`: what a change does to every environment, in serving terms, offline.

`run` checks out and synthesizes the base revision beside the working tree,
`diff` compares the two, `report` writes the result as Markdown or JSON.
"""

from stacks.preview.diff import ResourceChange, diff_resources
from stacks.preview.report import MARKER, EnvironmentPreview, Preview, to_json, to_markdown
from stacks.preview.run import preview

__all__ = [
    "MARKER",
    "EnvironmentPreview",
    "Preview",
    "ResourceChange",
    "diff_resources",
    "preview",
    "to_json",
    "to_markdown",
]
