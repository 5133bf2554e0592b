"""Hypothesis strategies: hostile values and mutations of each kind of file the kit reads.

A mutation is plain data (a tuple naming what to change and the new value) so that a failing
example prints readably; :mod:`tests.fuzz.targets` applies it to a copy of a real seed file.
Strings may hold the placeholders ``{SENTINEL}`` and ``{PAYLOAD}`` (see
:meth:`tests.fuzz.harness.Arena.fill`).
"""

from __future__ import annotations

from hypothesis import strategies as st

HUGE_INTS = (0, -1, -2, 1, 3, 17, 2**16 + 1, 2**24 + 1, 2**31, 2**32 + 7, 10**9, 10**12, 2**63 - 1, -(2**63), 2**64, 10**30)
CODE_SPECS = (
    "os:system", "builtins:exec", "builtins:eval", "subprocess:run", "subprocess:Popen", "posix:system", "importlib:import_module",
    "pty:spawn", "{PAYLOAD}:f", "{PAYLOAD}:missing", "fuzz_payload:f", "torchvision:resnet18", "torchvision:{PAYLOAD}",
    "hf:{PAYLOAD}", "hf:/nonexistent/folder", "hf:../../..", "{PAYLOAD}", "mlp", "cnn", "bert", "", ":", "a:b:c", "mlp:", "../../etc/passwd",
    "mlp\nsparsekit: error: forged", "x\nos:system", "hf:/x\ny", "torchvision:x\ny", "\x1b[2Jmlp", "mlp\r",
)
"""Model sources a payload may name: code the user did not name, data prefixes, odd strings."""
HOSTILE_STRINGS = ("{SENTINEL}", "touch {SENTINEL}", "$(touch {SENTINEL})", "`touch {SENTINEL}`", "../../../../tmp/x", "/etc/passwd", "\x00", "é" * 5, "%s%n", "{0.__class__}")

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def scalars(code: bool = True) -> st.SearchStrategy:
    """Ints (huge, negative), floats (nan, inf), strings (paths, shell, code specs), bools, None."""
    strings = st.sampled_from(HOSTILE_STRINGS + CODE_SPECS) if code else st.sampled_from(("x", "../x", "/etc/passwd", "\x00", "é" * 5, "1e9", "-1", "null", "~"))
    return st.one_of(
        st.integers(-3, 70), st.sampled_from(HUGE_INTS), st.floats(allow_nan=True, allow_infinity=True, width=64),
        _text, strings, st.booleans(), st.none(),
    )


def values(code: bool = True, leaves: int = 6) -> st.SearchStrategy:
    """Any JSON-like value: scalars, lists and dicts nested a few levels."""
    return st.recursive(scalars(code), lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3), max_leaves=leaves)


def shapes(max_dim: int = 40) -> st.SearchStrategy:
    """Lists of dims: mostly small, sometimes huge, negative, zero, floats or strings."""
    dim = st.one_of(st.integers(0, max_dim), st.sampled_from(HUGE_INTS), st.sampled_from((1.5, "8", None, True)))
    return st.lists(dim, max_size=5)


TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool", "complex64")


@st.composite
def tensor_specs(draw) -> tuple:
    """``("tensor", shape, dtype, expand)``: a small real tensor, or one element expanded (stride 0)
    to a large shape, so the file is small but the tensor claims up to 10^12 elements."""
    expand = draw(st.booleans()) and draw(st.booleans())
    if expand:
        shape = draw(st.lists(st.sampled_from((1, 7, 1000, 10**6)), min_size=1, max_size=3))
    else:
        shape = draw(st.lists(st.integers(0, 40), max_size=3))
    return ("tensor", shape, draw(st.sampled_from(TORCH_DTYPES)), expand)


# ---- checkpoints ----------------------------------------------------------------------------------

MODULE_NAMES = ("", "body", "body.0", "body.1", "head", "nope", "body.0.weight", "head.weight", ".", "body..0", "__class__", "body.0.__dict__", "_modules")
SIZE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups", "num_features", "normalized_shape", "num_embeddings",
              "embedding_dim", "heads", "num_heads", "forward", "training", "__class__", "weight", "_parameters")
TENSOR_NAMES = ("weight", "bias", "nope", "_weight_mask", "running_mean", "__dict__")


def sizes() -> st.SearchStrategy:
    return st.one_of(st.integers(-2, 40), st.sampled_from(HUGE_INTS), st.sampled_from((2.5, "8", None, True, [8], [8, 8])))


def edits() -> st.SearchStrategy:
    """One architecture edit: a resize (attrs, shapes), a low-rank factorisation, or any value."""
    resize_change = st.fixed_dictionaries({}, optional={
        "attrs": st.dictionaries(st.sampled_from(SIZE_ATTRS), sizes(), max_size=3) | values(),
        "shapes": st.dictionaries(st.sampled_from(TENSOR_NAMES), shapes() | values(), max_size=3) | values(),
    })
    resize = st.fixed_dictionaries({"kind": st.just("resize"), "modules": st.dictionaries(st.sampled_from(MODULE_NAMES), resize_change | values(), max_size=3) | values()})
    low_rank = st.fixed_dictionaries({"kind": st.just("low_rank"), "layers": st.dictionaries(st.sampled_from(MODULE_NAMES), sizes(), max_size=3) | values()})
    return st.one_of(resize, low_rank, st.fixed_dictionaries({"kind": values()}), values())


ZOO_ARGS = ("hidden", "in_features", "depth", "classes", "width", "image_size", "command", "args", "shell", "weights", "__class__", "")
KINDS = ("zoo", "factory", "hf", "hf-config", "torchvision", "memory", None, "", 1)
HF_CLASSES = ("BertModel", "BertForMaskedLM", "GPT2Model", "os.system", "PreTrainedModel", "AutoModel", "", "__import__", "BertConfig")


def hf_records() -> st.SearchStrategy:
    config = st.dictionaries(st.sampled_from(("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads", "intermediate_size", "auto_map", "architectures")), values(), max_size=4)
    return st.fixed_dictionaries({"class": st.sampled_from(HF_CLASSES) | values(), "config": config | values()}, optional={"attn_implementation": st.sampled_from(("eager", "sdpa", "flash_attention_2", "evil")) | values()})


def input_entries() -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(("input", "x", "input_ids", "")) | values(),
        "shape": shapes(300) | values(),
        "dtype": st.sampled_from(("float32", "float16", "int64", "int32", "bool", "float64", "system", "object")) | values(),
        "high": sizes(), "low": sizes(),
        "dynamic": st.lists(st.tuples(sizes(), scalars()), max_size=2) | values(),
    })


HOSTILE_SOURCES = (
    ("os:system", {"command": "touch {SENTINEL}"}),
    ("posix:system", {"command": "touch {SENTINEL}"}),
    ("subprocess:run", {"args": "touch {SENTINEL}", "shell": True}),
    ("subprocess:getoutput", {"cmd": "touch {SENTINEL}"}),
    ("pty:spawn", {"argv": ["touch", "{SENTINEL}"]}),
    ("importlib:import_module", {"name": "fuzz_payload"}),
    ("runpy:run_path", {"path_name": "{PAYLOAD}"}),
    ("{PAYLOAD}:f", {}),
    ("fuzz_payload:f", {}),
    ("pathlib:Path.touch", {}),
)
"""Code sources with the arguments that make them create the sentinel, were they ever called."""


def checkpoint_mutations() -> st.SearchStrategy:
    """One change to a checkpoint payload (see :func:`tests.fuzz.targets.apply_checkpoint`)."""
    return st.one_of(
        st.tuples(st.just("source.code"), st.sampled_from(HOSTILE_SOURCES), st.sampled_from(KINDS)),
        st.tuples(st.just("source.spec"), st.sampled_from(CODE_SPECS) | _text),
        st.tuples(st.just("source.kind"), st.sampled_from(KINDS) | values()),
        st.tuples(st.just("source.args"), st.dictionaries(st.sampled_from(ZOO_ARGS), values(), max_size=3) | values()),
        st.tuples(st.just("source.arg"), st.sampled_from(ZOO_ARGS), values()),
        st.tuples(st.just("source.hf"), hf_records() | values()),
        st.tuples(st.just("source.edits"), st.lists(edits(), max_size=3) | values()),
        st.tuples(st.just("source.edit+"), edits()),
        st.tuples(st.just("source.del"), st.sampled_from(("kind", "spec", "args", "edits", "hf"))),
        st.tuples(st.just("inputs"), st.lists(input_entries(), max_size=3) | values()),
        st.tuples(st.just("input0"), st.sampled_from(("name", "shape", "dtype", "high", "low", "dynamic")), values() | shapes(300)),
        st.tuples(st.just("meta"), values()),
        st.tuples(st.just("modelopt_state"), values()),
        st.tuples(st.just("modelopt_modes"), st.lists(st.tuples(st.sampled_from(("sparse_magnitude", "sparsegpt", "quantize", "kd_loss", "export", "nope", "os.system")), values()), max_size=3) | values()),
        st.tuples(st.just("modelopt_mode_config"), values()),
        st.tuples(st.just("sd.drop"), st.integers(0, 20)),
        st.tuples(st.just("sd.tensor"), st.integers(0, 20), tensor_specs()),
        st.tuples(st.just("sd.add"), st.sampled_from(("extra", "body.0.weight_extra", "head.bias2", "")), tensor_specs()),
        st.tuples(st.just("sd.value"), st.integers(0, 20), values()),
        st.tuples(st.just("top"), st.sampled_from(("format", "schema", "source", "inputs", "meta", "modelopt_state", "state_dict", "extra")), values()),
        st.tuples(st.just("top.del"), st.sampled_from(("format", "schema", "source", "inputs", "meta", "modelopt_state", "state_dict"))),
    )


# ---- Hugging Face config.json -----------------------------------------------------------------------

HF_KEYS = ("num_hidden_layers", "hidden_size", "vocab_size", "intermediate_size", "num_attention_heads", "max_position_embeddings", "architectures",
           "model_type", "auto_map", "type_vocab_size", "hidden_act", "layer_norm_eps", "torch_dtype", "dtype", "pad_token_id", "position_embedding_type",
           "num_labels", "id2label", "_attn_implementation", "transformers_version", "is_decoder", "add_cross_attention", "tie_word_embeddings")
AUTO_MAPS = (
    {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"},
    {"AutoModel": "modeling_evil.EvilModel"},
    {"AutoModel": "fuzz--repo--modeling_evil.EvilModel"},
    {"AutoModel": ["modeling_evil.EvilModel", None]},
    {"AutoConfig": "../../fuzz_payload.f"},
    {},
)


def hf_mutations() -> st.SearchStrategy:
    special = st.one_of(
        st.tuples(st.just("set"), st.just("architectures"), st.sampled_from((["BertModel"], ["BertForMaskedLM"], ["GPT2Model"], ["os.system"], ["EvilModel"], [], "BertModel", [1], None, ["AutoModel"]))),
        st.tuples(st.just("set"), st.just("model_type"), st.sampled_from(("bert", "gpt2", "llama", "evil-test", "", "auto", "t5", None))),
        st.tuples(st.just("set"), st.just("auto_map"), st.sampled_from(AUTO_MAPS) | values()),
    )
    size = st.one_of(st.integers(-3, 70), st.sampled_from(HUGE_INTS), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(("32", [32, 32], {"a": 32}, None, True)))
    return st.one_of(
        special,
        st.tuples(st.just("set"), st.sampled_from(HF_KEYS), size),
        st.tuples(st.just("set"), st.sampled_from(HF_KEYS), values()),
        st.tuples(st.just("del"), st.sampled_from(HF_KEYS)),
        st.tuples(st.just("raw"), st.sampled_from(("", "{", "[]", "null", "1", '"x"', "{\"a\": 1e999}", "\xff\xfe", "{" * 5000))),
    )


# ---- recipes ------------------------------------------------------------------------------------------

RECIPE_PATHS = (
    "version", "name", "model", "model.source", "model.args", "model.args.hidden", "model.args.depth", "model.input_shapes", "model.seq_len",
    "model.dynamic_axes", "model.max_params", "model.trust_remote_code", "model.unknown", "task", "task_args", "task_args.image_size",
    "sparsify", "sparsify.method", "sparsify.include", "sparsify.exclude", "sparsify.calib_samples", "sparsify.include_from", "sparsify.exclude_from",
    "sparsify.permute", "export", "export.precisions", "export.opset", "prune", "prune.granularity", "prune.ratio", "prune.round_to",
    "prune.schedule", "finetune", "finetune.epochs", "unknown", "model.args.unknown",
)
RECIPE_SOURCES = ("mlp", "cnn", "hf:/nonexistent", "hf:../..", "missing.pt", "../../etc/passwd", "torchvision:nope", "", "x" * 300)


def recipe_mutations() -> st.SearchStrategy:
    """Changes of a parsed recipe, and raw YAML (tags that would construct objects, alias bombs)."""
    raw = st.sampled_from((
        "!!python/object/apply:os.system ['touch {SENTINEL}']\n",
        "model: !!python/object/apply:os.system ['touch {SENTINEL}']\n",
        "a: &a [1, 2]\nb: *a\n", "model:\n  source: mlp\n  args: {hidden: 32}\n  args: {hidden: 64}\n", "\t\x00", "- 1\n- 2\n", "",
        "model: {source: mlp}\nsparsify: {include: &x [&y [a, a, a, a, a, a, a, a], *y, *y, *y, *y, *y, *y, *y]}\n",
        "version: 1\nmodel: {source: mlp}\n" + "k: " + "[" * 2000 + "]" * 2000 + "\n",
    ))
    return st.one_of(
        st.tuples(st.just("set"), st.sampled_from(RECIPE_PATHS), values(code=False)),
        st.tuples(st.just("set"), st.just("model.source"), st.sampled_from(RECIPE_SOURCES)),
        st.tuples(st.just("set"), st.sampled_from(("model.args.hidden", "model.seq_len", "sparsify.calib_samples", "model.max_params", "export.opset", "prune.round_to")), st.sampled_from(HUGE_INTS)),
        st.tuples(st.just("set"), st.just("model.input_shapes"), st.lists(st.sampled_from(("input:1x32", "input:1000000x1000000", "x:1x32:int64:0..5", "input:0x32", "input:1x32:system", "a:b")), max_size=2)),
        st.tuples(st.just("set"), st.just("export"), st.sampled_from(({"precisions": ["fp32"]}, {"precisions": []}, {"precisions": ["fp32", "fp32"]}, {"precisions": ["int4"]}, None))),
        st.tuples(st.just("del"), st.sampled_from(RECIPE_PATHS)),
        st.tuples(st.just("laughs"), st.sampled_from(("task_args", "model.args", "sparsify.include", "model.input_shapes")), st.integers(2, 6)),
        st.tuples(st.just("raw"), raw),
    )


# ---- ONNX ---------------------------------------------------------------------------------------------

ONNX_OPS = ("Conv", "Gemm", "MatMul", "If", "Loop", "Scan", "Relu", "Identity", "Custom", "", "os.system", "QuantizeLinear", "DequantizeLinear", "Transpose", "Cast")
EXTERNAL_LOCATIONS = ("../../etc/passwd", "/etc/passwd", "x.data", "{SENTINEL}", "nope.bin", "", ".", "/dev/zero", "mlp.onnx")


def onnx_mutations() -> st.SearchStrategy:
    """Byte-level damage, or a structured change of the parsed model (applied before serialising)."""
    index = st.integers(0, 12)
    return st.one_of(
        st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("dims"), index, st.lists(st.sampled_from((0, 1, 2, 16, 32, -1, 2**31, 2**40, 2**62)), max_size=4) | st.lists(st.integers(0, 64), min_size=65, max_size=70)),
        st.tuples(st.just("dtype"), index, st.integers(0, 26)),
        st.tuples(st.just("raw_len"), index, st.sampled_from((-1000, -4, -1, 1, 4, 1000))),
        st.tuples(st.just("typed"), index, st.integers(0, 300)),
        st.tuples(st.just("external"), index, st.sampled_from(EXTERNAL_LOCATIONS), st.sampled_from((None, 0, 4, 2**40, -1)), st.sampled_from((None, 0, 4, 2**40))),
        st.tuples(st.just("op"), index, st.sampled_from(ONNX_OPS)),
        st.tuples(st.just("input"), index, st.integers(0, 3), st.sampled_from(("", "nope", "input", "x" * 1000))),
        st.tuples(st.just("domain"), index, st.sampled_from(("", "ai.onnx.ml", "com.microsoft", "evil", "ai.onnx.preview.training"))),
        st.tuples(st.just("subgraph"), index, st.integers(1, 20), st.sampled_from((None, [2**40], [10**6, 10**6], [4]))),
        st.tuples(st.just("attr_tensor"), index, st.lists(st.sampled_from((0, 1, 4, 2**33)), max_size=3), st.integers(0, 16)),
        st.tuples(st.just("opset"), st.sampled_from((1, 7, 13, 17, 23, 99, 10**6, -1))),
        st.tuples(st.just("ir_version"), st.sampled_from((0, 1, 3, 8, 10, 99, -1))),
        st.tuples(st.just("metadata"), st.sampled_from(("sparsekit.inputs", "sparsekit.sparse_layers", "sparsekit.precision", "x")), values(code=False).map(lambda v: __import__("json").dumps(v, default=str))),
    )


# ---- training states and loop.json ------------------------------------------------------------------

def state_mutations() -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("set"), st.sampled_from(("step", "epoch_loss", "running", "epoch_metrics", "model", "optimizer")), values()),
        st.tuples(st.just("set"), st.just("step"), st.sampled_from(HUGE_INTS)),
        st.tuples(st.just("del"), st.sampled_from(("step", "epoch_loss", "running", "epoch_metrics", "model", "optimizer"))),
        st.tuples(st.just("model.tensor"), st.integers(0, 10), tensor_specs()),
        st.tuples(st.just("model.drop"), st.integers(0, 10)),
        st.tuples(st.just("opt.state"), st.integers(0, 10), st.sampled_from(("exp_avg", "exp_avg_sq", "step")), tensor_specs() | values()),
        st.tuples(st.just("opt.group"), st.sampled_from(("lr", "params", "betas", "weight_decay", "eps")), values()),
        st.tuples(st.just("opt.set"), st.sampled_from(("state", "param_groups")), values()),
    )


LOOP_CHECKPOINTS = ("step1.pt", "../step1.pt", "/etc/passwd", "{SENTINEL}", "{PAYLOAD}", "nope.pt", "loop.json", "", ".", "../../../../../../dev/zero")


def loop_mutations() -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("set"), st.sampled_from(("steps", "accepted", "stopped", "task", "metric", "unpruned", "max_drop")), values()),
        st.tuples(st.just("set"), st.just("accepted"), st.sampled_from(HUGE_INTS)),
        st.tuples(st.just("step"), st.sampled_from(("checkpoint", "target", "params", "step", "metrics", "drop")), values()),
        st.tuples(st.just("step"), st.just("checkpoint"), st.sampled_from(LOOP_CHECKPOINTS)),
        st.tuples(st.just("steps+"), st.integers(1, 3)),
        st.tuples(st.just("raw"), st.sampled_from(("", "{", "[]", "null", "{\"steps\": 1}", "\xff"))),
        st.tuples(st.just("evil_step_checkpoint"), st.sampled_from(("os:system", "{PAYLOAD}:f"))),
    )


# ---- user data sources (CSV, JSONL, image folders) ------------------------------------------------

DATA_VALUES = (
    "", " ", "nan", "inf", "-inf", "1e400", "-1", "0.5", "1" * 400, "[" * 3000 + "]" * 3000, "[1, [2]]", "[]", "{}", "null", "true",
    "a,b", 'say "hi"', "line\nbreak", "\r", "\x00", "\ufeff1", "é" * 5, "../../etc/passwd", "{SENTINEL}", "$(touch {SENTINEL})", " ".join(["1"] * 63), " ".join(["1"] * 65),
)
"""Cell values a user's file may hold: empties, non-numbers, huge and deep values, separators, paths."""


def data_values() -> st.SearchStrategy:
    """A cell's value: one of :data:`DATA_VALUES`, a huge or negative int, a float, or short text."""
    return st.one_of(st.sampled_from(DATA_VALUES), st.sampled_from(HUGE_INTS), st.floats(allow_nan=True, allow_infinity=True), _text)


def table_mutations() -> st.SearchStrategy:
    """A change to a CSV / JSONL made of rows: a cell, a column, the rows kept, the encoding, or its bytes."""
    return st.one_of(
        st.tuples(st.just("cell"), st.integers(0, 39), st.sampled_from(("input", "label")), data_values()),
        st.tuples(st.just("column"), st.sampled_from(("drop", "rename", "add", "duplicate")), st.sampled_from(("input", "label")), st.sampled_from(("text", "label", "input", "", "x y", "\x00", "é"))),
        st.tuples(st.just("rows"), st.integers(0, 40)),
        st.tuples(st.just("encoding"), st.sampled_from(("utf-16", "utf-32", "utf-8-sig", "latin-1", "cp1252"))),
        st.tuples(st.just("bytes"), st.sampled_from(("flip", "insert", "truncate", "delete")), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    )


def image_mutations() -> st.SearchStrategy:
    """A change to an image folder: a hostile file or link in a class folder, or a class folder's layout."""
    return st.one_of(
        st.tuples(st.just("file"), st.sampled_from(("empty", "truncated", "bomb", "huge_dims", "text", "random", "gif_bomb"))),
        st.tuples(st.just("link"), st.sampled_from(("/etc/passwd", "/etc", "{SENTINEL}", "loop", "dangling", "inside", "self"))),
        st.tuples(st.just("layout"), st.sampled_from(("empty_class", "nested", "hidden_class", "file_at_root", "only_root_files", "odd_suffix"))),
    )
