"""`python -m stacks`: the cdktf app entry (cdktf.json "app").

Synthesizes every environment into the directory the cdktf CLI asks for
(CDKTF_OUTDIR), or cdktf.out.
"""

import os
import sys

from stacks.cli import main

sys.exit(main(["synth", "--outdir", os.environ.get("CDKTF_OUTDIR", "cdktf.out")]))
