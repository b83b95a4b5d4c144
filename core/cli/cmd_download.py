"""``quantpress download REPO_ID``: fetch what conversion needs from the Hugging Face Hub (config,
safetensors, tokenizer and chat-template files; never pickles) into huggingface_hub's cache and print
the folder, which ``quantpress convert`` takes."""

from __future__ import annotations

import argparse
import sys

ORDER = 15


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("download", help="download a Hub model for conversion (safetensors, tokenizer; no pickles)",
                       description="Download what conversion needs from the Hugging Face Hub into its cache "
                       "and print the local folder. Gated repos use the token of `hf auth login`.")
    p.add_argument("repo", metavar="REPO_ID", help="Hub repo id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--file", dest="filename", metavar="NAME", help="for a GGUF-only repo: the .gguf file to fetch")
    p.add_argument("--json", action="store_true", help="print {repo, path, files, bytes, seconds} as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantpress.core.cli.output import print_json, progress_line
    from quantpress.core.hub_download import download

    quiet = args.json or not sys.stderr.isatty()
    result = download(args.repo, revision=args.revision, filename=args.filename,
                      report=(lambda p: None) if quiet else progress_line(60))
    if not quiet:
        sys.stderr.write("\n")
    if args.json:
        print_json({"repo": result.repo_id, "path": result.path, "files": list(result.files),
                    "bytes": result.n_bytes, "seconds": round(result.seconds, 3)})
    else:
        print(result.path)  # alone on stdout: `quantpress convert "$(quantpress download ORG/NAME)"`
    return 0
