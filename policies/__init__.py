"""Policy as code for the synthesized stacks (checkov checks in `checks/`) and the rendered specs."""
