"""The one reader of the golden manifests' prose: fields written for people that the tests still take numbers from.

Every such field goes through a function here, each knowing the patterns the golden README uses; text that fits
none raises :class:`ManifestFormatError` naming the field, the text and the patterns known, so a fixture set made
another way fails at once instead of being read wrongly. The patterns:

* ``checkpoint_layout`` (:func:`checkpoint_layout`): which official container the state dict sits in (→ our model
  kind), and the scalars stored beside it, ``"<file>: dict(<key>=state_dict, k=v, ...)"``.
* ``constructor`` (:func:`constructor`): ``"[<source path> ]Name(k=v, ...)"`` with Python literal values, optionally
  followed by a description after ``:``, ``=`` or ``,``.
* a seeded ``torch.randn`` call (:func:`seeded_randn`): ``"randn(<n>, ..., manual_seed(seed[ + <offset>]))"``.
* a fill rule of the weight rule (:func:`fill_rule`): the manifest's ``weight_rule.rules`` names.
* a tensor name carrying ψ (:func:`truncation_of`): ``"<name>_truncated_<ψ>"``.
* a key carrying its own column layout (:func:`labelled_entry`): ``"<name>_(<labels>)"``, e.g. the crop boxes
  ``"boxes_(x1,y1,x2,y2,[H,W])"``.

Golden tolerances (:func:`tolerance`) are keyed by the role of a stored tensor (what quantity it is: a W+ code, a
generator image, DECA codes, Euler angles, Δp, ...), found from its name by :data:`ROLES`; the values are the golden
README's "suggested abs tol" (section 5), the largest of a role's rows. An output tensor of no known role fails.
"""
from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch


class ManifestFormatError(AssertionError):
    """A manifest field whose text fits none of the patterns this reader knows."""

    def __init__(self, field: str, text: str, known: str):
        super().__init__(f"golden manifest: {field} = {text!r} fits no known pattern ({known}); update "
                         f"tests/manifest_prose.py if the fixtures are now written another way")


# --- checkpoint layouts -------------------------------------------------------------------------------------------

# The container key named in a case's `checkpoint_layout` → our model kind.
LAYOUT_KINDS = (("['g_ema']", "stylegan2"), ("['e']", "e4e"), ("['E_flame']", "deca"), ("A_matrix", "directions"))


@dataclass(frozen=True)
class Layout:
    """What a ``checkpoint_layout`` says: our model kind, and the scalars stored beside the state dict."""

    kind: str
    extras: dict


def checkpoint_layout(text: str) -> Layout:
    """Parses e.g. ``"rosinality StyleGAN2 checkpoint['g_ema'] state_dict"`` or ``"A_matrix.pt:
    dict(A_matrix=state_dict, learned_directions=15, shift_scale=6.0, w_plus=True)"``."""
    kinds = [kind for needle, kind in LAYOUT_KINDS if needle in text]
    if len(kinds) != 1:
        raise ManifestFormatError("checkpoint_layout", text, "one of " + ", ".join(n for n, _ in LAYOUT_KINDS))
    extras = {}
    found = re.search(r"dict\((.*)\)", text)
    if found:
        for item in found.group(1).split(","):
            key, sep, value = (s.strip() for s in item.partition("="))
            if not (sep and key.isidentifier()):
                raise ManifestFormatError("checkpoint_layout", text, "dict(key=value, ...)")
            if value != "state_dict":
                extras[key] = _literal("checkpoint_layout", text, value)
    return Layout(kinds[0], extras)


# --- constructors and calls ---------------------------------------------------------------------------------------

def constructor(text: str) -> tuple[str, dict]:
    """Parses ``"Generator(size=256, style_dim=512, n_mlp=8)"`` (a description may follow after ``:``, ``=``, ``,``)
    into ``("Generator", {"size": 256, ...})``."""
    found = re.match(r"\s*(?:[\w./-]+/[\w.-]+\s+)?([A-Za-z_]\w*)\(([^()]*)\)\s*(?:$|[:=,])", text)
    if not found:
        raise ManifestFormatError("constructor", text, "[path/module ]Name(k=v, ...)[: description]")
    try:
        call = ast.parse(f"f({found.group(2)})", mode="eval").body
    except SyntaxError:
        raise ManifestFormatError("constructor", text, "Name(k=v, ...) with literal values") from None
    if call.args:
        raise ManifestFormatError("constructor", text, "keyword arguments only")
    return found.group(1), {k.arg: _literal("constructor", text, ast.unparse(k.value)) for k in call.keywords}


def seeded_randn(text: str) -> tuple[int, int]:
    """``(n, seed offset)`` of a described ``torch.randn(n, ...)`` drawn from ``manual_seed(seed + offset)``."""
    n = re.search(r"randn\((\d+)\s*,", text)
    seed = re.search(r"manual_seed\(seed(?:\s*\+\s*(\d+))?\)", text)
    if not (n and seed):
        raise ManifestFormatError("seeded call", text, "randn(<n>, ...) with manual_seed(seed[ + <offset>])")
    return int(n.group(1)), int(seed.group(1) or 0)


def truncation_of(name: str) -> float | None:
    """ψ of a tensor named ``"<name>_truncated_<ψ>"``, None for a name without ``_truncated_``."""
    if "_truncated_" not in name:
        return None
    found = re.fullmatch(r"\w+?_truncated_(\d+(?:\.\d+)?)", name)
    if not found:
        raise ManifestFormatError("tensor name", name, "<name>_truncated_<ψ>")
    return float(found.group(1))


def labelled_entry(spec: dict, name: str, labels: str) -> dict:
    """The entry ``"<name>_(<labels>)"`` of a case (``{}`` when the case has no ``<name>_`` entry); another column
    layout than ``labels`` fails."""
    keys = [k for k in spec if k.startswith(f"{name}_")]
    if not keys:
        return {}
    if keys != [f"{name}_({labels})"]:
        raise ManifestFormatError(f"{name} columns", ", ".join(keys), f"{name}_({labels})")
    return spec[keys[0]]


def _literal(field: str, text: str, value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ManifestFormatError(field, text, f"literal values ({value!r} is not one)") from None


# --- the weight rule ----------------------------------------------------------------------------------------------

FILL_RULES: dict[str, Callable[[torch.Tensor, list[int]], torch.Tensor]] = {
    "r": lambda r, shape: r,
    "100*r": lambda r, shape: r * 100,
    "0.1*r": lambda r, shape: r * 0.1,
    "0.03*r": lambda r, shape: r * 0.03,
    "1+0.1*r": lambda r, shape: r * 0.1 + 1,
    "|0.1*r|": lambda r, shape: (r * 0.1).abs(),
    "1+|0.1*r|": lambda r, shape: (r * 0.1).abs() + 1,
    "0.25+0.05*r": lambda r, shape: r * 0.05 + 0.25,
    "r/sqrt(fan_in)": lambda r, shape: r * torch.tensor(1 / math.sqrt(math.prod(shape[1:])), dtype=torch.float32),
}


def fill_rule(name: str) -> Callable[[torch.Tensor, list[int]], torch.Tensor]:
    """The value ``rule(r, shape)`` of a drawn ``r`` under a named fill rule (``"keep"`` is not drawn)."""
    if name not in FILL_RULES:
        raise ManifestFormatError("fill rule", name, ", ".join(FILL_RULES))
    return FILL_RULES[name]


# --- tolerances by tensor role ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Role:
    """What a stored tensor is, the names it goes by (regular expressions) and its absolute tolerance."""

    name: str
    pattern: str
    tolerance: float


ROLES = (
    Role("mapped latent (G.style)", r"w_from_z|truncation_latent", 5e-5),
    Role("inverted W+ code (e4e)", r"wplus|w_s", 1e-5),
    Role("A's shift and shifted W+ codes", r"shift|w_r|w_r_truncated", 2e-5),
    Role("generator image", r"image|image_truncated_\d+(\.\d+)?", 1e-4),
    Role("DECA crop transform", r"theta(_\w+)?", 1e-4),
    Role("DECA 224-px crop", r"image_224", 5e-5),
    Role("DECA codes", r"params|jaw|exp11|p_s|p_t", 1e-5),
    Role("Euler angles (degrees)", r"pose_euler_deg|angles_\w+", 2e-4),
    Role("Δp", r"delta_p", 1e-4),
    Role("uint8 crop or landmarks (exact)", r"(\w+_)?crops?(_?\w+)?|(\w+_)?kpt68", 0.0),
)


def role(tensor: str) -> Role:
    """The role of a stored tensor, from its name (the first of :data:`ROLES` whose pattern matches it whole)."""
    for r in ROLES:
        if re.fullmatch(r.pattern, tensor):
            return r
    raise ManifestFormatError("tensor name", tensor, "a role of tests/manifest_prose.py ROLES: " +
                              "; ".join(r.name for r in ROLES))


def tolerance(tensor: str) -> float:
    """Absolute tolerance of a stored golden output tensor (0.0: bit-exact), by its role."""
    return role(tensor).tolerance
