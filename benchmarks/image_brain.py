"""Brain localisation benchmark: DDPM trained on MNI152, synthetic lesions in Colin27.

    python benchmarks/image_brain.py --size 32 --quick --out F.json    # a few minutes
    python benchmarks/image_brain.py --size 64 --out benchmarks/results/image_brain_64.json

Same as ``diffad bench image``; see ``diffad.bench.image_brain`` for the split.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from diffad.cli.bench_image import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    command = "python benchmarks/image_brain.py " + " ".join(shlex.quote(a) for a in argv)
    return run(args, command=command)


if __name__ == "__main__":
    sys.exit(main())
