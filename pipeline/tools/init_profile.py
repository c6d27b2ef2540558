"""`sao-litert init NAME --model FOLDER|REPO_ID --t5 FOLDER|REPO_ID`: write profiles/NAME.toml for
a model on disk, after checking all that can be checked without loading the weights: the files,
model_config.json's schema, the checkpoint's key names and shapes (safetensors header, or a .ckpt
mapped with weights_only), and the T5 width against the model's cond_dim. Nothing is written
unless every check passes; errors are the build's one-line `error: FILE: FIELD: …`.

The aarch64 check is sized here, in the profile where a reader sees it, not by the build at run
time: its planned emulated seconds (pipeline/core/resources.py `plan_aarch64`, from the model's
size) must fit `--aarch64-budget-s` (default 900, about a real-size cold conversion). Over it, the
check is cut in this order until it fits: no 8-step generation, the app's decoder only, one latent,
one DiT case, one prompt; still over it, the check is off, saying so. The same profile then
verifies the same things on every machine, and its keys stay the same."""
import json
import logging
import tempfile
from pathlib import Path

from pipeline.core import resources
from pipeline.core.atomic import write_bytes
from pipeline.core.config import REPO, load_profile
from pipeline.core.model_config import load_model_config
from pipeline.core.errors import InputError

log = logging.getLogger("sao.init")


def checkpoint_shapes(path: Path) -> dict[str, tuple]:
    """Key → shape without reading a tensor: the safetensors header, or torch.load with mmap."""
    if path.suffix != ".safetensors":
        from stages.checkpoint import load_checkpoint  # weights_only, mmap: tensors are not read
        return {k: tuple(v.shape) for k, v in load_checkpoint(path).items()}
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise InputError(path, None, f"unreadable safetensors file: {e}") from None


def check(profile_path: Path):
    from stages.models import layout
    src = load_profile(profile_path).source  # folders, repo ids, files present
    cfg = load_model_config(src.model_config_json)
    layout.check_keys(checkpoint_shapes(src.checkpoint), layout.checkpoint_layout(cfg), src.checkpoint)
    t5_config = src.t5_dir / "config.json"
    layout.check_t5_width(t5_config, json.loads(t5_config.read_text()).get("d_model"), cfg.conditioning.cond_dim)
    return src


# The cuts, in order, each a [targets] setting (pipeline/core/config.py TargetsSettings).
CUTS = [("aarch64_steps", 0), ("aarch64_decoders", "app"), ("aarch64_latents", 1), ("aarch64_dit_cases", 1),
        ("aarch64_prompts", 1)]


def sized_targets(draft: Path, budget_s: float) -> list[str]:
    """The [targets] lines that make the profile's aarch64 check fit the budget (none if it does)."""
    profile, settings = load_profile(draft), {}
    plan = resources.plan_aarch64(profile)
    full = plan["seconds"]
    for field, value in CUTS:
        if plan["seconds"] <= budget_s:
            break
        settings[field] = value
        profile.targets = profile.targets.model_copy(update=settings)
        plan = resources.plan_aarch64(profile)
    if plan["seconds"] <= budget_s and not settings:
        return []
    lines = ["[targets]", f"# The aarch64 check (emulated) plans {full:.0f} s for this model with every default,",
             f"# over the budget (`sao-litert init --aarch64-budget-s {budget_s:g}`);"]
    if plan["seconds"] > budget_s:
        return lines + [f"# cut to its smallest it still plans {plan['seconds']:.0f} s: off. Turn it on (and size it) "
                        "where an hour of emulation is fine, or verify on an Arm machine.", "aarch64 = false"]
    return lines + [f"# sized to fit: {plan['seconds']:.0f} s planned (pipeline/core/resources.py plan_aarch64)."] + [
        f"{k} = {json.dumps(v)}" for k, v in settings.items()]


def text(name: str, model: str, t5: str, revision: str | None, t5_revision: str | None, src=None,
         targets: list[str] = ()) -> str:
    """The profile; `src` (the resolved source) adds what each field resolved to, as comments."""
    lines = [f"# Written by `sao-litert init {name}`. Build: ./dev build profile=profiles/{name}.toml",
             "[source]", 'kind = "files"',
             "# The Stable Audio Open Small download: a folder, or a Hugging Face repo id looked up in",
             "# the local cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub), never downloaded.",
             f"model = {json.dumps(model)}"]
    if revision:
        lines += ["# The cached revision to use (a branch, tag or commit; default: main).",
                  f"revision = {json.dumps(revision)}"]
    if src:
        lines += [f"# Resolved now: {src.model_config_json.parent}",
                  f"# Checkpoint: {src.checkpoint.name} (model.safetensors is preferred over model.ckpt: no pickle)."]
    lines += ["# The T5 encoder (google-t5/t5-base for SAOS): config.json, model.safetensors, spiece.model.",
              f"t5 = {json.dumps(t5)}"]
    if t5_revision:
        lines += ["# The cached revision of the T5 encoder.", f"t5_revision = {json.dumps(t5_revision)}"]
    if src:
        lines += [f"# Resolved now: {src.t5_dir}"]
    return "\n".join([*lines, *targets]) + "\n"


def _absolute(spec: str) -> str:
    """A folder given relative to the shell becomes absolute (the profile lives elsewhere)."""
    folder = Path(spec).expanduser()
    return str(folder.resolve()) if folder.is_dir() else spec


def main(name: str, model: str, t5: str, revision=None, t5_revision=None, force=False, folder=None,
         aarch64_budget_s: float = 900.0) -> int:
    target = Path(folder or REPO / "profiles").resolve() / f"{name}.toml"
    try:
        if target.exists() and not force:
            raise InputError(target, None, "exists; pass --force to replace it")
        model, t5 = _absolute(model), _absolute(t5)
        with tempfile.TemporaryDirectory() as d:
            draft = Path(d) / f"{name}.toml"
            draft.write_text(text(name, model, t5, revision, t5_revision))
            try:
                src = check(draft)
                targets = sized_targets(draft, aarch64_budget_s)
            except InputError as e:  # name the profile being made, not the draft
                e.file = str(target) if e.file == str(draft) else e.file
                raise
        write_bytes(target, text(name, model, t5, revision, t5_revision, src, targets).encode())
    except InputError as e:
        log.error("error: %s", e)
        return InputError.exit_code
    shown = target.relative_to(REPO) if target.is_relative_to(REPO) else target
    log.info("wrote %s (checkpoint %s, T5 %s)", shown, src.checkpoint, src.t5_dir)
    log.info("build it: ./dev build profile=%s", shown)
    return 0
