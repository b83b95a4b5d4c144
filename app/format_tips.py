"""One sentence per format for tooltips, written for someone who has never heard of k-quants.
Used when the core format catalogue has no description of its own."""

from __future__ import annotations

FORMAT_TIPS: dict[str, str] = {
    "F32": "Full 32-bit floats: exact, four times the size of 8-bit; only useful as a reference.",
    "F16": "16-bit floats: practically lossless, half the size of F32; the usual reference for quality checks.",
    "BF16": "16-bit brain floats: the original training precision of most models, lossless for them.",
    "Q8_0": "8 bits per weight: indistinguishable from the original for almost every use, half of F16.",
    "Q6_K": "About 6.6 bits per weight: very close to the original, a safe choice when it fits.",
    "Q5_K_M": "About 5.7 bits per weight: small quality loss, a good balance for larger GPUs.",
    "Q5_K_S": "About 5.5 bits per weight: slightly smaller and slightly worse than Q5_K_M.",
    "Q5_0": "5-bit legacy format with 32-weight blocks: prefer Q5_K_M when the model allows it.",
    "Q5_1": "5-bit legacy format with an offset per block: prefer Q5_K_M when the model allows it.",
    "Q4_K_M": "About 4.9 bits per weight: the most popular trade-off of size and quality.",
    "Q4_K_S": "About 4.6 bits per weight: a bit smaller than Q4_K_M with noticeably more loss.",
    "Q4_0": "4-bit legacy format: fast on some CPUs, worse quality than Q4_K_M at similar size.",
    "Q4_1": "4-bit legacy format with an offset per block: prefer Q4_K_M.",
    "IQ4_NL": "4.5-bit non-linear format: better than Q4_0 at the same size, works with any row length.",
    "IQ4_XS": "About 4.25 bits per weight: near Q4_K_S quality in less space; best with calibration.",
    "Q3_K_L": "About 4.3 bits per weight: 3-bit weights with larger attention/FFN parts; visible loss.",
    "Q3_K_M": "About 3.9 bits per weight: for when 4-bit does not fit; clearly worse, use calibration.",
    "Q3_K_S": "About 3.5 bits per weight: large quality loss; last resort before Q2_K.",
    "Q2_K": "About 3.2 bits per weight: the smallest, with heavy loss; only with calibration.",
}


def tip(fmt: str, core_description: str = "") -> str:
    return core_description or FORMAT_TIPS.get(fmt.upper(), "")
