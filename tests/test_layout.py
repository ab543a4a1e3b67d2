"""The package's shape: layers without import circles, short files and functions, a linter that
passes, and a command line that starts without torch."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ddpm_fast": ROOT / "ddpm_fast", "ddpm_fast.kernels": ROOT / "kernels"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60  # lines of code: docstrings, comments and blank lines apart


def _modules() -> dict:
    """{dotted name: path} of every module of the package, ddpm_fast.kernels included."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports(name: str, path: Path, modules: dict) -> set:
    """The package's modules that ``name`` imports anywhere in its code (function-level and
    TYPE_CHECKING imports count). ``from X import a`` is an edge to X.a when that is a module."""
    is_package = path.name == "__init__.py"
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        edges.update(t for t in targets if t in modules and t != name)
    return edges


def import_graph() -> dict:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict):
    """One import circle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_imports():
    """A relative import that names no module fails here, not in a user's hands."""
    import importlib
    for name in sorted(_modules()):
        if not name.endswith("__main__"):
            importlib.import_module(name)


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle_closed_by_a_function_level_import(tmp_path):
    graph = import_graph()
    assert find_cycle({**graph, "ddpm_fast._io": graph["ddpm_fast._io"] | {"ddpm_fast.cli"}})
    source = "def f():\n    from .model import MLPDiffusion\n"
    (tmp_path / "checks.py").write_text(source)
    modules = {"ddpm_fast._checks": tmp_path / "checks.py", "ddpm_fast.model": tmp_path / "model.py"}
    assert _imports("ddpm_fast._checks", tmp_path / "checks.py", modules) == {"ddpm_fast.model"}


# The layers, bottom up (docs/architecture.md): a module imports from its own layer or below.
LAYERS = {
    "foundations": ("constants", "_values", "_checks", "_io", "_timing", "rows", "distributed"),
    "model and maths": ("model", "schedule", "data", "grids", "samplers", "diffusion", "metrics", "checkpoint",
                        "shards"),
    "execution": ("kernels", "backends", "sampling"),
    "training": ("training", "distillation"),
    "studies": ("bench", "bench_train", "sweep", "tuning", "time_to_quality", "profiling", "plotting"),
    "front ends": ("cli", "__main__", ""),
}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    for number, members in enumerate(LAYERS.values()):
        if top in members:
            return number
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py's LAYERS: add it there and to "
                         "docs/architecture.md")


def test_every_module_imports_from_its_own_layer_or_below():
    names = list(LAYERS)
    upward = [f"{source} ({names[layer_of(source)]}) imports {target} ({names[layer_of(target)]})"
              for source, targets in import_graph().items() for target in targets
              if layer_of(target) > layer_of(source)]
    assert not upward, "\n".join(upward)


def _code_lines(source_lines: list, node) -> int:
    body = node.body
    skip = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))  # the docstring
    return sum(1 for number in range(node.lineno, node.end_lineno + 1)
               if number not in skip and source_lines[number - 1].strip()
               and not source_lines[number - 1].strip().startswith("#"))


def test_files_and_functions_are_short():
    too_long = []
    for path in _modules().values():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = _code_lines(lines, node)
                if count > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {count} lines of code")
    assert not too_long, "\n".join(too_long)


def test_ruff_passes():
    sources = [str(ROOT / folder) for folder in ("ddpm_fast", "kernels", "tests", "benchmarks")]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *sources],
                            capture_output=True, text=True, cwd=ROOT)
    assert "No module named ruff" not in result.stderr, "ruff is a test dependency: pip install -e '.[test]'"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _fresh_python(*args: str):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("argv, code", [(["--version"], 0), (["--help"], 0), (["sample", "--help"], 0),
                                        (["train", "--help"], 0), (["bench", "--repeats", "0"], 2),
                                        (["sample", "--steps", "abc"], 2), (["nope"], 2)],
                         ids=lambda value: " ".join(value) if isinstance(value, list) else str(value))
def test_help_version_and_argument_errors_import_no_torch(argv, code):
    # -X importtime lists every module the command loads, on stderr
    result = _fresh_python("-X", "importtime", "-m", "ddpm_fast", *argv)
    assert result.returncode == code, result.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "ddpm_fast.cli" in loaded  # the listing works
    heavy = sorted(loaded & {"torch", "sklearn", "numpy", "matplotlib", "triton"})
    assert not heavy, f"{argv} imported {heavy}"


def test_import_ddpm_fast_loads_no_scikit_learn():
    result = _fresh_python("-c", "import sys, ddpm_fast as D; D.sample; print('sklearn' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


# Where each public name of ddpm_fast is defined (its __all__ must not lose any of them).
PUBLIC = {"available_backends": "backends.registry", "backend_names": "backends.registry",
          "load_checkpoint": "checkpoint", "load_pretrained": "checkpoint", "save_checkpoint": "checkpoint",
          "DATASETS": "constants", "make_dataset": "data", "make_s_curve": "data", "diffusion_loss": "diffusion",
          "p_sample": "diffusion", "q_sample": "diffusion", "quality_report": "metrics", "rbf_mmd": "metrics",
          "sliced_wasserstein": "metrics", "MLPDiffusion": "model", "SAMPLERS": "constants",
          "SamplerPlan": "samplers", "make_plan": "samplers", "p_sample_loop": "sampling", "sample": "sampling",
          "Schedule": "schedule", "make_schedule": "schedule", "load_samples": "shards",
          "RECIPES": "training.config", "TrainConfig": "training.config", "TrainResult": "training.loop",
          "train": "training.loop", "available_samplers": "", "DistillConfig": "distillation.config",
          "DistillResult": "distillation.loop", "distill": "distillation.loop",
          "read_distill_state": "distillation.loop"}


def test_every_public_name_is_its_object_whatever_was_imported_before():
    import importlib

    import ddpm_fast as D
    for name in sorted(_modules()):  # a submodule named like a function must not shadow it
        if not name.endswith("__main__"):
            importlib.import_module(name)
    assert sorted(D.__all__) == sorted(PUBLIC)
    for name, home in PUBLIC.items():
        expected = getattr(importlib.import_module(f"ddpm_fast.{home}" if home else "ddpm_fast"), name)
        assert getattr(D, name) is expected, name


# Each command's options as version 0.1.0 of the command line had them (flags, default, help, choices).
OPTIONS_0_1_0 = Path(__file__).with_name("data") / "cli_options_0.1.0.json"
# The changes made on purpose: --device of the sampling commands defaults to the GPU when there is
# one (0.1.0's help showed the machine's own value), the backends are described in docs/, there
# is one more backend, cpu-fused, and a CPU's chunks are sized to its cache. With distilled students:
# --sampler defaults to a student's own plan, and --checkpoint names the bundled students.
STUDENT_SAMPLER = "(default: a distilled student's own plan, else ddpm)"
CHANGED = {("--sampler", "default"): "None",
           ("--sampler", "help"): f"ddpm: the original (all T steps); ddim, dpm++2m, unipc: few-step samplers "
                                  f"{STUDENT_SAMPLER}",
           ("bench", "--sampler", "help"): "comma-separated samplers (ddpm, ddim, dpm++2m, unipc, and student: a "
                                           "distilled student's own plan), each a sweep of its own (default: student "
                                           "for a distilled student, else ddpm)",
           ("--checkpoint", "help"): "checkpoint file, or a bundled model: seed (the default: the original recipe), "
                                     "best, or its distilled students distill-4, distill-2, distill-1",
           ("--device", "default"): "None",
           ("--device", "help"): "where to sample: cpu, cuda or cuda:N (default: cuda when a GPU is available, "
                                 "else cpu)",
           ("--backend", "help"): "sampling backend (docs/backends.md)",
           ("--backend", "choices"): ["auto", "compile", "cpu-fused", "cudagraph", "eager", "triton-step",
                                      "triton-fused"],
           ("--chunk-size", "default"): "'auto'",
           ("--chunk-size", "help"): "rows sampled (and, under torchrun, written) at a time; auto: 16384 on a CPU "
                                     "(a chunk stays in cache), 1048576 on a GPU; with row-keyed noise (torchrun, "
                                     "--keyed, or more points than this) the rows depend on it only by float32 "
                                     "rounding"}


ADDED = {("train", "--precision"), ("evaluate", "--sweep-students")}  # options added since 0.1.0
ADDED_COMMANDS = ("distill",)


def _options(parser) -> dict:
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {command: {"/".join(a.option_strings) or a.dest: {"default": repr(a.default), "help": a.help,
                                                             "choices": list(a.choices) if a.choices else None}
                      for a in command_parser._actions}
            for command, command_parser in sub.choices.items()}


def test_every_command_keeps_its_options_defaults_and_help():
    from ddpm_fast.cli import build_parser
    before, now = json.loads(OPTIONS_0_1_0.read_text()), _options(build_parser())
    assert [command for command in now if command not in ADDED_COMMANDS] == list(before)
    for command, options in before.items():
        assert [flag for flag in now[command] if (command, flag) not in ADDED] == list(options), command
        for flag, fields in options.items():
            for field, value in fields.items():
                if now[command][flag][field] != value:
                    wanted = CHANGED.get((command, flag, field), CHANGED.get((flag, field)))
                    assert now[command][flag][field] == wanted, (command, flag, field, value, now[command][flag][field])


def test_the_torch_free_names_are_the_implementations_names():
    import ddpm_fast as D
    from ddpm_fast import constants
    from ddpm_fast.backends import backend_names
    from ddpm_fast.checkpoint import pretrained_path
    assert backend_names() == ["auto", *constants.BACKENDS]
    assert D.available_samplers() == list(constants.SAMPLERS)
    for name in constants.PRETRAINED:
        assert Path(pretrained_path(name)).is_file()
    json.dumps(D.RECIPES["fast"].__dict__)  # the recipes are plain values
