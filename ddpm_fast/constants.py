"""The names every layer and the command line choose from, in one module that imports nothing.

The CLI builds its parser (``--help``, argument errors) from these without importing torch;
the modules that implement each name import it from here, and a test checks that the
two agree (``tests/test_layout.py``).
"""

SAMPLERS = ("ddpm", "ddim", "dpm++2m", "unipc")  # ddpm_fast.samplers builds each one's tables
GRIDS = ("trailing", "leading", "linspace", "karras", "lu")  # timestep grids of the few-step samplers
PRIORS = ("unit", "matched")  # x_T ~ N(0, I), or N(0, (1 - abar_t0) I)

PRECISIONS = ("fp32", "tf32", "bf16")
# The built-in sampling backends in registration order (ddpm_fast.backends); "auto" picks one.
BACKENDS = ("compile", "cpu-fused", "cudagraph", "eager", "triton-step", "triton-fused")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile modes of "compile"
DEFAULT_CHUNK = 1 << 20  # rows per chunk of sample() on a GPU: bounds eager's [chunk, 128] activations to 512 MB
# On a CPU a chunk's activations should stay in cache: eager at 65,536 x 100 steps took 2.45-2.85 s with
# chunks of 4,096-16,384 rows and 9.98 s with 2^20 (2-core AVX-512 CPU); 16,384 is one key block of
# ddpm_fast.rows, so keyed chunks draw no noise twice.
CPU_CHUNK = 1 << 14


def default_chunk(device_type: str) -> int:
    """sample()'s ``chunk_size="auto"``: rows per chunk on this kind of device."""
    return CPU_CHUNK if device_type == "cpu" else DEFAULT_CHUNK

DATASETS = ("s_curve", "moons", "circles", "swiss_roll")
SCHEDULE_KINDS = ("sigmoid", "linear", "cosine")
TRAIN_BACKENDS = ("eager", "compile", "cudagraph")
TRAIN_PRECISIONS = ("fp32", "bf16")  # bf16: the eager backend's loss under autocast; weights and Adam stay fp32
LR_SCHEDULES = ("constant", "cosine")
# bundled model name -> file in ddpm_fast/pretrained; distill-K: a K-step student of "best" (ddpm_fast.distillation)
PRETRAINED = {"seed": "s_curve.pt", "best": "best.pt", "distill-4": "distill-4.pt", "distill-2": "distill-2.pt",
              "distill-1": "distill-1.pt"}
# How a student learns from its teacher (ddpm_fast.distillation): the teacher's few-step trajectory, or
# progressive halving of DDIM steps.
DISTILL_METHODS = ("trajectory", "progressive")
DISTILL_BACKENDS = ("eager", "compile")  # the training backends a distillation step runs on
