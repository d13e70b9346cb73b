"""What the rules share (`infra.rules.problems`): raising a problem as a construct's error."""

from __future__ import annotations

import pytest

from infra import rules


def test_require_names_the_prop():
    rules.require("alias", None)
    with pytest.raises(ValueError, match=r"^alias: 'aws/x': use letters"):
        rules.require("alias", rules.kms_alias_problem("aws/x"))
