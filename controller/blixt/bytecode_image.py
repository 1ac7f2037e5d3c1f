"""`python -m blixt.bytecode_image`: package the compiled TC object as the
OCI image bpfman pulls, with labels read from the object itself, and push it.

The program labels name the object's global functions with the bpfman
program type the agent loads them as; the map labels name every map in
.maps with its type. Both come from the object's BTF, so an image cannot
advertise a program or map the object lacks."""

from __future__ import annotations

import argparse
import pathlib
import sys

from blixt import oci_image
from blixt.btf import Btf
from blixt.dataplane.layout import MAP_TYPE_NAMES
from blixt.node.manager import PROGRAMS

# Kernel map type numbers (enum bpf_map_type) to the names the labels use.


def labels(object_path: pathlib.Path) -> tuple[dict[str, str], dict[str, str]]:
    """(programs, maps) labels for the object; fails if an expected program is missing."""
    btf = Btf.from_elf(object_path)
    functions = set(btf.functions())
    programs = {}
    for mode, (name, _) in PROGRAMS.items():
        if name not in functions:
            raise ValueError(f"{object_path} has no program {name} (global functions: {sorted(functions)})")
        programs[name] = mode
    maps = {name: MAP_TYPE_NAMES.get(m.map_type, str(m.map_type)) for name, m in btf.maps().items()}
    return programs, maps


def image_for(object_path: pathlib.Path) -> oci_image.BytecodeImage:
    programs, maps = labels(object_path)
    return oci_image.build_image(object_path.read_bytes(), object_path.name, programs=programs, maps=maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blixt.bytecode_image",
        description="Build the bpfman bytecode image from the compiled object and push it over HTTPS.")
    parser.add_argument("--object", type=pathlib.Path, default=pathlib.Path("build/blixt.bpf.o"),
                        help="compiled TC object (default: %(default)s)")
    parser.add_argument("--push", metavar="HOST[:PORT]/REPO:TAG", required=True,
                        help="where to push the image")
    parser.add_argument("--ca-file", help="CA bundle that signs the registry's certificate")
    args = parser.parse_args(argv)
    try:
        image = image_for(args.object)
        digest = oci_image.push(image, args.push, cafile=args.ca_file)
    except (OSError, ValueError, oci_image.PushError) as e:
        print(f"bytecode image: {e}", file=sys.stderr)
        return 1
    programs, maps = labels(args.object)
    print(f"pushed {args.push}@{digest} (programs: {', '.join(sorted(programs))}; {len(maps)} maps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
