"""GPU speed levers for the Sync-LoRA backend. Each is opt-in, each keeps the recipe, each is measured against the
default path by benchmarks/gpu_suite.py and exercised on the tiny model by tests/test_ltx_speed.py.

Knobs (environment variables read by `synclora.runtime.Runtime`, docs/CONFIG.md; turned into options once per loaded
model by `SpeedOptions.from_runtime`):

- `SYNCLORA_ATTENTION=<diffusers backend>` (e.g. `_flash_3`, `_flash_3_hub`, `flash`, `_native_cudnn`): LTX-2.3's
  connectors fill the prompt's padding with learned registers and return an all-ones text mask, so the mask is
  dropped (exactly: it only ever added zeros) and mask-less kernels such as FlashAttention-3 become usable. Sync-LoRA
  at full strength builds no video self-attention mask, so every attention call is then mask-free.
- `SYNCLORA_FP8_MATMUL=1` (memory mode `fp8`): real fp8 matmuls. Linear weights are stored as float8_e4m3 with one
  scale per output row and multiplied by `torch._scaled_mm` against activations quantized per token (scale from
  the row's absolute maximum, then clamped to the fp8 range so no value overflows into inf/NaN: the black-frame
  failure ltx-core guards against). The same layers as ltx-core's fp8-scaled-mm policy stay in bf16: everything
  outside the blocks, the first block and the last five. Sync-LoRA still runs in bf16 beside the fp8 base layer.
  Without fp8 hardware (compute capability < 8.9, or no GPU) the layers dequantize and run in the compute dtype,
  with a message saying so.
- `SYNCLORA_AOT=compile` / `SYNCLORA_AOT_DIR=<folder>`: ahead-of-time compiled transformer blocks (torch.export +
  AOTInductor, through `spaces.aoti_compile` when `spaces` is installed, plain torch otherwise). One package for
  stage 1 (Sync-LoRA on) and one for stage 2 (off), each shared by all blocks of the model (regional: one block is
  compiled, every block runs it with its own weights, so nothing is copied); token counts are dynamic, so any
  resolution and length use the same packages. `compile`
  captures a small run, compiles (minutes, once) and saves the packages to the folder; a later process that finds
  them there loads them and runs compiled from its first call, with no warm-up (on ZeroGPU: compile inside a
  `@spaces.GPU` start-up call, or ship the folder).

The model given to these functions is the recipe's `LoadedModel` (`ltx.recipe`), used by its attributes only: the
LTX core does not import the recipe. What the AoT capture runs (the backend, once) is passed in as `run`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from synclora.errors import InputError

AOT_FILES = {"stage1": "block-stage1.pt2", "stage2": "block-stage2.pt2"}
AOT_MANIFEST = "manifest.json"
# Inductor settings of the ZeroGPU AoT Spaces (huggingface.co/blog/zerogpu-aoti) for CUDA; defaults on the CPU.
CUDA_INDUCTOR = {"conv_1x1_as_mm": True, "epilogue_fusion": False, "coordinate_descent_tuning": True,
                 "coordinate_descent_check_all_directions": True, "max_autotune": True, "triton.cudagraphs": True}
FP8_MAX = 448.0  # float8_e4m3fn


@dataclass(frozen=True)
class SpeedOptions:
    attention: str = ""  # a diffusers attention backend; "" keeps today's (SDPA with the text mask)
    fp8_matmul: bool = False  # only in memory mode fp8
    aot: str = ""  # "" | "compile" | "load"
    aot_dir: str = ""

    @classmethod
    def from_runtime(cls, rt) -> SpeedOptions:
        """The levers a `synclora.runtime.Runtime` asks for. SYNCLORA_AOT unset (or `auto`) loads packages an earlier
        process saved in SYNCLORA_AOT_DIR, if there are any: no warm-up."""
        aot_dir = str(rt.aot_dir) if rt.aot_dir else ""
        aot = (rt.aot or "").lower()
        if aot in ("0", "off", "no", "false"):
            aot = ""
        elif aot in ("", "auto"):
            aot = "load" if aot_dir and (Path(aot_dir) / AOT_MANIFEST).is_file() else ""
        elif aot not in ("compile", "load"):
            raise InputError(f"SYNCLORA_AOT must be compile, load or off, got {rt.aot!r}")
        if aot == "load" and not aot_dir:
            raise InputError("SYNCLORA_AOT=load needs SYNCLORA_AOT_DIR (the folder the packages were saved to)")
        return cls(attention=rt.attention or "", fp8_matmul=rt.fp8_matmul, aot=aot, aot_dir=aot_dir)

    def label(self) -> str:
        parts = [f"attention={self.attention}" if self.attention else "",
                 "fp8-matmul" if self.fp8_matmul else "", f"aot={self.aot}" if self.aot else ""]
        return ",".join(p for p in parts if p) or "default"


# --- attention --------------------------------------------------------------------------------------------------------
def drop_all_ones_mask(connectors) -> bool:
    """Remove the frozen text mask when it is all ones (it then only adds zeros). Returns whether it was dropped."""
    mask = getattr(connectors, "mask", None)
    if mask is None:
        return True
    if not bool(mask.bool().all()):
        return False
    connectors.mask = None
    return True


def set_attention(model, backend: str) -> str:
    """Select a diffusers attention backend for the transformer; refuses backends that need a mask we still have."""
    if not drop_all_ones_mask(model.pipe.connectors):
        raise RuntimeError("the text mask is not all ones (not an LTX-2.3 connector?); mask-less attention would "
                           "change the result")
    model.pipe.transformer.set_attention_backend(backend)
    return f"attention backend {backend} (text mask dropped: all ones)"


# --- fp8 matmuls ------------------------------------------------------------------------------------------------------
def fp8_matmul_supported(device: torch.device) -> tuple[bool, str]:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False, "no CUDA GPU: fp8 weights are dequantized for each matmul"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return False, (f"{torch.cuda.get_device_name(device)} (sm_{major}{minor}) has no fp8 tensor cores: fp8 "
                       "weights are dequantized for each matmul (slower than bf16; use memory mode bf16 if it fits)")
    return True, f"fp8 matmuls on {torch.cuda.get_device_name(device)} (sm_{major}{minor})"


class Fp8Linear(torch.nn.Module):
    """A Linear with float8_e4m3 weights (per-output-row scales) and per-token dynamic activation quantization."""

    def __init__(self, linear: torch.nn.Linear, use_scaled_mm: bool):
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out): the scale_b layout of _scaled_mm
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.compute_dtype = linear.weight.dtype
        # _scaled_mm wants both inner dimensions divisible by 16.
        self.use_scaled_mm = use_scaled_mm and self.in_features % 16 == 0 and self.out_features % 16 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.use_scaled_mm:
            amax = x2.abs().amax(dim=1, keepdim=True).float()
            x_scale = (amax / FP8_MAX).clamp(min=1e-12)
            xq = (x2.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            bias = None if self.bias is None else self.bias.to(x.dtype)
            out = torch._scaled_mm(xq, self.weight.t(), scale_a=x_scale, scale_b=self.weight_scale, bias=bias,
                                   out_dtype=x.dtype)
        else:
            w = (self.weight.to(torch.float32) * self.weight_scale.t()).to(x.dtype)
            out = torch.nn.functional.linear(x2, w, None if self.bias is None else self.bias.to(x.dtype))
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, scaled_mm={self.use_scaled_mm}"


def fp8_excluded(name: str, num_layers: int) -> bool:
    """ltx-core's fp8-scaled-mm exclusions in diffusers' names: outside the blocks, the first and the last five.

    (A model of fewer than 12 blocks, i.e. the tiny test model, keeps only the outside layers in bf16.)"""
    if not name.startswith("transformer_blocks."):
        return True
    index = int(name.split(".")[1])
    return num_layers >= 12 and (index == 0 or index >= num_layers - 5)


def quantize_fp8(transformer: torch.nn.Module, device: torch.device, force_scaled_mm: bool = False) -> str:
    """Swap every eligible Linear (the base layer under a PEFT LoRA included) for an `Fp8Linear`, in place.

    `force_scaled_mm` runs `torch._scaled_mm` even where `fp8_matmul_supported` says no (PyTorch also implements it
    on the CPU, slowly): the tests use it to run the very arithmetic the GPU runs."""
    ok, reason = fp8_matmul_supported(device)
    if force_scaled_mm:
        ok, reason = True, f"fp8 matmuls forced on {device}"
    num_layers = transformer.config.num_layers
    swapped, saved = 0, 0
    for name, module in list(transformer.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not torch.nn.Linear or "lora_" in full:
                continue
            owner = full.rsplit(".base_layer", 1)[0]
            if fp8_excluded(owner, num_layers):
                continue
            setattr(module, child_name, Fp8Linear(child, use_scaled_mm=ok))
            swapped += 1
            saved += child.weight.numel() * (child.weight.element_size() - 1)
    return f"{reason}; {swapped} linear layers in fp8 ({saved / 2**30:.2f} GiB saved)"


# --- ahead-of-time compiled blocks ------------------------------------------------------------------------------------
def _lora_probe(block: torch.nn.Module):
    """A PEFT LoRA layer of the block, whose `disable_adapters` tells stage 1 (False) from stage 2 (True)."""
    for module in block.modules():
        if hasattr(module, "disable_adapters") and hasattr(module, "lora_A"):
            return module
    return None


def capture_block_inputs(model, run: Callable[[], object]) -> dict:
    """Call `run` (the backend once, both stages, on `model`) and keep block 0's inputs for stage 1 and stage 2."""
    block = model.pipe.transformer.transformer_blocks[0]
    probe = _lora_probe(block)
    if probe is None:
        raise RuntimeError("no LoRA layer in the transformer blocks: nothing tells stage 1 from stage 2")
    seen: dict = {}

    def keep(_module, args, kwargs):
        stage = "stage2" if probe.disable_adapters else "stage1"
        if stage not in seen:
            clone = lambda v: v.detach().clone() if torch.is_tensor(v) else v  # noqa: E731
            seen[stage] = (torch.utils._pytree.tree_map(clone, args), torch.utils._pytree.tree_map(clone, kwargs))

    handle = block.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    if set(seen) != {"stage1", "stage2"}:
        raise RuntimeError(f"the capture run reached only {sorted(seen)}")
    return seen


def _dynamic_shapes(block: torch.nn.Module, args, kwargs) -> dict:
    """Token dimensions (video and audio sequence lengths) are dynamic; everything else is fixed.

    Keyed by the block's parameter names, as torch.export wants when arguments come by keyword."""
    import inspect

    bound = inspect.signature(block.forward).bind(*args, **kwargs).arguments
    lengths = {bound["hidden_states"].shape[1], bound["audio_hidden_states"].shape[1]}

    def spec(v):
        if not torch.is_tensor(v):
            return None
        dims = {d: torch.export.Dim.AUTO for d, n in enumerate(v.shape) if d > 0 and n in lengths}
        return dims or None

    return {name: torch.utils._pytree.tree_map(spec, value) for name, value in bound.items()}


def _package(exported, inductor: dict, use_spaces: bool | None = None) -> bytes:
    """AOTInductor package of an exported program, with the weights left out (each block supplies its own).

    Through `spaces.aoti_compile` when the `spaces` package is importable (on ZeroGPU it also clears the shared
    object's executable-stack flag, which ZeroGPU requires); otherwise the same inductor settings through torch
    directly (e.g. on a GPU box without gradio/spaces)."""
    if use_spaces is not False:
        try:
            from spaces.zero.torch.aoti import aoti_compile
        except Exception:  # ImportError, or spaces' own start-up checks
            if use_spaces:
                raise
        else:
            return aoti_compile(exported, inductor).archive_file.getvalue()
    import io

    from torch._inductor.package.package import package_aoti

    options = {**inductor, "aot_inductor.package_constants_in_so": False, "aot_inductor.package": True,
               "always_keep_tensor_constants": True, "joint_graph_constant_folding": False,
               "aot_inductor.package_constants_on_disk_format": "pickle_weights"}
    args, kwargs = exported.example_inputs
    artifacts = torch._inductor.aot_compile(exported.module(), args, kwargs, options=options)
    buf = io.BytesIO()
    package_aoti(buf, [a for a in artifacts if isinstance(a, str)])
    return buf.getvalue()


def compile_block(block: torch.nn.Module, args, kwargs, lora_on: bool, inductor: dict,
                  use_spaces: bool | None = None) -> bytes:
    """torch.export one block in the given LoRA state (PEFT's on/off is Python control flow, fixed at export),
    then AOTInductor; token dimensions dynamic."""
    layers = [m for m in block.modules() if hasattr(m, "disable_adapters") and hasattr(m, "lora_A")]
    previous = [m.disable_adapters for m in layers]
    for m in layers:
        m.enable_adapters(lora_on)
    try:
        with torch.no_grad():
            exported = torch.export.export(block, tuple(args), dict(kwargs),
                                           dynamic_shapes=_dynamic_shapes(block, args, kwargs))
            return _package(exported, inductor, use_spaces)
    finally:
        for m, was_disabled in zip(layers, previous):
            m.enable_adapters(not was_disabled)


class AotPackage:
    """One compiled block graph, loaded lazily in the process that runs it (ZeroGPU runs calls in a forked worker),
    fed the calling block's own tensors (`user_managed`: pointers, no copy)."""

    def __init__(self, source: bytes | str | Path):
        self.source = source
        self.pid, self.runner, self.fqns, self.loaded = None, None, set(), None

    def __call__(self, weights: dict, *args, **kwargs):
        import io

        if self.pid != os.getpid():
            src = io.BytesIO(self.source) if isinstance(self.source, bytes) else str(self.source)
            self.runner = torch._inductor.aoti_load_package(src)
            self.fqns, self.loaded, self.pid = set(self.runner.get_constant_fqns()), None, os.getpid()
        if self.loaded is not weights:
            self.runner.load_constants({k: v for k, v in weights.items() if k in self.fqns},
                                       check_full_update=True, user_managed=True)
            self.loaded = weights
        return self.runner(*args, **kwargs)


class AotBlocks:
    """Each block's `forward`, replaced by the stage-1 or stage-2 package (chosen by the LoRA state) on its weights."""

    def __init__(self, transformer: torch.nn.Module, packages: dict):
        self.models = {stage: AotPackage(src) for stage, src in packages.items()}
        self.blocks = list(transformer.transformer_blocks)
        for block in self.blocks:
            weights = dict(block.state_dict())
            block.forward = _Dispatch({stage: (model, weights) for stage, model in self.models.items()},
                                      _lora_probe(block))

    def remove(self) -> None:
        for block in self.blocks:
            del block.forward  # back to the class's forward


class _Dispatch:
    def __init__(self, calls: dict, probe):
        self.calls, self.probe = calls, probe

    def __call__(self, *args, **kwargs):
        model, weights = self.calls["stage2" if self.probe.disable_adapters else "stage1"]
        return model(weights, *args, **kwargs)


def _manifest(model) -> dict:
    t = model.pipe.transformer
    device = torch.cuda.get_device_name() if model.device.type == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": device,
            "dtype": str(model.dtype), "transformer": {k: v for k, v in t.config.items() if not k.startswith("_")},
            "adapters": sorted(t.peft_config) if hasattr(t, "peft_config") else []}


def compile_aot(model, run: Callable[[], object], folder: str | Path | None = None, inductor: dict | None = None,
                log=print, use_spaces: bool | None = None) -> AotBlocks:
    """Capture (`run`: the backend once on `model`, both stages), export and compile both stages' block; save the
    packages to `folder` (when given); apply them."""
    # On the CPU (tests, tiny model) the wrapper is built without optimization: it halves the compile time.
    default = CUDA_INDUCTOR if model.device.type == "cuda" else {"aot_inductor.compile_wrapper_opt_level": "O0"}
    inductor = dict(default, **(inductor or {}))
    t0 = time.perf_counter()
    captured = capture_block_inputs(model, run)
    block = model.pipe.transformer.transformer_blocks[0]
    packages = {stage: compile_block(block, *captured[stage], lora_on=stage == "stage1", inductor=inductor,
                                     use_spaces=use_spaces)
                for stage in ("stage1", "stage2")}
    if folder:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stage, data in packages.items():
            (folder / AOT_FILES[stage]).write_bytes(data)
        (folder / AOT_MANIFEST).write_text(json.dumps(_manifest(model), indent=1, default=str))
    log(f"AoT: compiled stage-1 and stage-2 blocks in {time.perf_counter() - t0:.0f}s"
        + (f", saved to {folder}" if folder else ""))
    return AotBlocks(model.pipe.transformer, packages)


def load_aot(model, folder: str | Path) -> AotBlocks:
    """Apply packages saved by `compile_aot`; refuses ones made for another model, dtype, torch or GPU."""
    folder = Path(folder)
    saved = json.loads((folder / AOT_MANIFEST).read_text())
    now = json.loads(json.dumps(_manifest(model), default=str))
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise RuntimeError(f"the AoT packages in {folder} were made for another setup ({', '.join(changed)} "
                           "differ); delete them or compile again")
    return AotBlocks(model.pipe.transformer, {stage: str(folder / name) for stage, name in AOT_FILES.items()})


def apply(model, options: SpeedOptions, run: Callable[[object], object] | None = None, log=print) -> list[str]:
    """The levers chosen in `options`, applied to a built model (`ltx.recipe.build_model`'s hook). `run(model)`
    runs the backend once on the model (AoT compile captures the blocks' inputs from it)."""
    notes = []
    if options.attention:
        notes.append(set_attention(model, options.attention))
    if options.fp8_matmul:
        if model.memory != "fp8":
            notes.append("SYNCLORA_FP8_MATMUL applies to memory mode fp8 only; ignored")
        else:
            notes.append(quantize_fp8(model.pipe.transformer, model.device))
    if options.aot:
        if options.aot == "load":
            model.aot = load_aot(model, options.aot_dir)
            notes.append(f"AoT packages loaded from {options.aot_dir}")
        else:
            if run is None:
                raise RuntimeError("AoT compile needs a run of the backend to capture the blocks' inputs from")
            model.aot = compile_aot(model, lambda: run(model), options.aot_dir or None, log=log)
            notes.append("AoT blocks compiled" + (f" and saved to {options.aot_dir}" if options.aot_dir else ""))
    for note in notes:
        log(f"speed: {note}")
    return notes
