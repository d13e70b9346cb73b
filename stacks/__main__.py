"""`python -m stacks`: the cdktf app entry (cdktf.json "app").

Synthesizes every environment of the project into the directory the cdktf CLI
asks for (CDKTF_OUTDIR), or the project's output folder.
"""

import sys

from stacks.cli import main

sys.exit(main(["synth"]))
