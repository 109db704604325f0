"""Training and inference speed of the zoo's recurrent models against plain Keras and PyTorch.

For each model, several configurations train on the same synthetic HAR-shaped batches (128
steps, 9 channels, 6 classes, Adam), timed in turns within one run so that the load of a shared
machine hits them alike; ratios are medians of the per-round ratios. On `--backend tensorflow`:

- `zoo`: the model exactly as the registry builds it (`zoo.fused.NativeLSTM` for every LSTM,
  `FusedLSTM` for bidirectional ones where the C++ op is not built), compiled as
  `zoo.xla.use_xla` compiles a long run;
- `keras`: the zoo builder with plain `keras.layers.*`, TensorFlow's default (no XLA on CPU);
- `keras_xla`: the same with `jit_compile=True`;
- `fused`: `zoo.fused.FusedLSTM` for every LSTM layer, without XLA;
- `native`: `zoo.fused.NativeLSTM` (the zoo's C++ op) for every LSTM layer, without XLA;
  configurations that build the same network compiled the same way are timed once.

On `--backend jax` (or torch) `zoo` and `keras` (plain `keras.layers.*`), both with Keras' default
`jit_compile="auto"`: XLA on JAX, eager on PyTorch; `FusedLSTM` is plain Keras on PyTorch. On JAX
also the paths of `zoo.scan` forced (RNN_ZOO_RNN_PATH while the model is traced): `scan` (the
zoo's own loop) and `loop` (Keras' step-by-step loop); `zoo` takes the one `zoo.scan.POLICY`
picks. Configurations that run the same loop are timed once. And:

- `torch`: the same network in PyTorch (`nn.LSTM`/`nn.GRU`/`nn.RNN`, last state, `nn.Linear`),
  in a worker process (two thread pools spinning in one process slow each other down), with
  `--threads` threads, and `torch_1t` with one: with 2 threads and other jobs running, PyTorch's
  OpenMP threads spin-wait for each other and its throughput can drop tenfold, so the table
  also compares with the better of the two.

The RNN-FCN models (`--models lstm_fcn,mlstm_fcn,gru_fcn`) run at their own defaults, the
papers' (8 units over the dimension-shuffled input, dropout 0.8, Conv1D blocks of 128-256-128
filters with kernels 8-5-3, batch normalisation, squeeze-and-excitation in `mlstm_fcn`), and
their PyTorch twin is the same network (`nn.LSTM`/`nn.GRU` over the transposed input beside
`nn.Conv1d` + `nn.BatchNorm1d` blocks, the sizes read from the zoo's builder).

Then inference: the latency of one window (batch 1) and the throughput at batch 256; on
TensorFlow, the zoo's C++ LSTM op alone (a forward and a backward call at both layer shapes of
`stacked_lstm`); and the time to parse the UCI HAR zip cold and from its cache. Prints Markdown
tables.

`--gpu` (the default where `nvidia-smi` lists a GPU and no --backend is given) measures issue
28's table instead, on Keras' JAX backend without importing TensorFlow: for each shape (steps x
features, units, batch) of GPU_SHAPES and model (lstm, gru, stacked_lstm), training samples/s
(`model.fit` on NumPy arrays, as `zoo.fit` trains) of the zoo's three paths (`scan`, `loop`,
`keras`: Keras' own, its cuDNN LSTM on a GPU), the path `zoo.scan.POLICY` picks, and PyTorch's
cuDNN `nn.LSTM`/`nn.GRU` of the same size with Adam and the same batch (tensors already on the
device), in interleaved rounds; then the `zoo.scan.POLICY` rows the measurement suggests.
`--device cpu` runs the same on the CPU (a smoke test; with `--quick --shapes 8x3/4/8`).

    pip install -e '.[bench]'          # PyTorch, optional
    python scripts/benchmark_speed.py --threads 2 --repeats 7
    python scripts/benchmark_speed.py --quick --models lstm,gru
    python scripts/benchmark_speed.py --models bilstm,bigru --no-torch --json rounds.json
    python scripts/benchmark_speed.py --backend jax --models lstm,gru   # pip install -e '.[jax]'
    XLA_PYTHON_CLIENT_PREALLOCATE=false python scripts/benchmark_speed.py --gpu   # GPU machine
    python scripts/benchmark_speed.py --models lstm_fcn,mlstm_fcn,gru_fcn
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS, FEATURES, CLASSES, UNITS = 128, 9, 6, 64
MODELS = ("lstm", "gru", "rnn", "bilstm", "stacked_lstm")
# model name -> (PyTorch module, layers, bidirectional)
TORCH_SPECS = {
    "lstm": ("LSTM", 1, False),
    "gru": ("GRU", 1, False),
    "rnn": ("RNN", 1, False),
    "bilstm": ("LSTM", 1, True),
    "bigru": ("GRU", 1, True),
    "birnn": ("RNN", 1, True),
    "stacked_lstm": ("LSTM", 2, False),
}
# The RNN-FCN models, at their own defaults: name -> (PyTorch recurrent module, squeeze-excite)
FCN_SPECS = {"lstm_fcn": ("LSTM", False), "mlstm_fcn": ("LSTM", True), "gru_fcn": ("GRU", False)}
BACKENDS = ("tensorflow", "jax", "torch")
# --gpu: issue 28's table, (steps, features, units, batch) -> models
GPU_SHAPES = {
    (128, 9, 64, 64): ("lstm", "gru", "stacked_lstm"),
    (128, 9, 64, 256): ("lstm", "gru", "stacked_lstm"),
    (128, 9, 256, 256): ("lstm", "gru", "stacked_lstm"),
    (512, 32, 128, 128): ("lstm",),
}
GPU_MODELS = ("lstm", "gru", "stacked_lstm")
RNN_PATHS = ("scan", "loop", "keras")  # zoo.scan.PATHS (not imported: no Keras before --backend)
HAR_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci_har_dataset.zip"
LATENCY_CALLS = 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo model names")
    p.add_argument(
        "--repeats", type=int, help="timed rounds per configuration (default 7; --gpu: 5)"
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads for TF and PyTorch")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend of the zoo and keras columns (default: $KERAS_BACKEND, else "
        "tensorflow); JAX uses every core whatever --threads says",
    )
    p.add_argument("--batch", type=int, default=64, help="training batch size")
    p.add_argument(
        "--steps", type=int, help="training batches per timed round (default 12; --gpu: 40)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 batches")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--data", type=Path, default=HAR_ZIP, help="UCI HAR zip for the parse timing")
    p.add_argument(
        "--json", type=Path, help="also write every round's figures (not only medians) here"
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        default=None,
        help="issue 28's GPU table on JAX, no TensorFlow (default where nvidia-smi lists a GPU "
        "and no --backend is given)",
    )
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="--gpu: where to run it")
    p.add_argument(
        "--shapes",
        help="--gpu: STEPSxFEATURES/UNITS/BATCH,... for every --models (default: GPU_SHAPES)",
    )
    p.add_argument(
        "--paths",
        default=",".join(RNN_PATHS),
        help="--gpu: the zoo.scan paths to time (the policy's pick is timed in any case)",
    )
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-device", default="cpu", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    explicit_backend = any(a == "--backend" or a.startswith("--backend=") for a in argv or sys.argv)
    if args.gpu is None:
        args.gpu = not explicit_backend and not args.torch_worker and gpu_present()
    if args.gpu and explicit_backend and args.backend != "jax":
        p.error(f"--gpu runs on JAX. Received: --backend {args.backend}")
    default_models = ",".join(MODELS)
    if args.gpu and args.models == default_models:
        args.models = ",".join(GPU_MODELS)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(TORCH_SPECS) - set(FCN_SPECS))
    if unknown:
        known = ", ".join([*TORCH_SPECS, *FCN_SPECS])
        p.error(f"--models must be among {known}. Received: {', '.join(unknown)}")
    args.paths = [path.strip() for path in args.paths.split(",") if path.strip()]
    if not args.paths or set(args.paths) - set(RNN_PATHS):
        p.error(f"--paths must be among {', '.join(RNN_PATHS)}. Received: {','.join(args.paths)}")
    try:
        args.shapes = parse_shapes(args.shapes, args.models) if args.gpu else None
    except ValueError as err:
        p.error(str(err))
    if args.steps is None:
        args.steps = 40 if args.gpu else 12
    if args.repeats is None:
        args.repeats = 5 if args.gpu else 7
    if args.quick:
        args.repeats, args.steps = 1, 2
    return args


def parse_shapes(text: str | None, models: list[str]) -> dict:
    """--shapes as GPU_SHAPES: {(steps, features, units, batch): models}; None: GPU_SHAPES, each
    shape with the --models it lists."""
    if text is None:
        chosen = {s: tuple(m for m in ms if m in models) for s, ms in GPU_SHAPES.items()}
        return {s: ms for s, ms in chosen.items() if ms}
    shapes = {}
    for item in text.split(","):
        try:
            window, units, batch = item.strip().split("/")
            steps, features = window.split("x")
            shape = tuple(int(v) for v in (steps, features, units, batch))
        except ValueError:
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(
                f"--shapes takes STEPSxFEATURES/UNITS/BATCH items, e.g. 128x9/64/64. "
                f"Received: {item!r}"
            )
        shapes[shape] = tuple(models)
    return shapes


def gpu_present() -> bool:
    """True where `nvidia-smi -L` lists a GPU (checked without importing JAX or TensorFlow)."""
    import shutil

    if shutil.which("nvidia-smi") is None:
        return False
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        return listed.returncode == 0 and "GPU" in listed.stdout
    return False


def model_settings(name: str) -> dict:
    """What the zoo model is built with: UNITS units, or an RNN-FCN model's own defaults."""
    return {} if name in FCN_SPECS else {"units": UNITS}


def batches(n: int, batch: int, seed: int = 0, steps: int = STEPS, features: int = FEATURES):
    """`n` synthetic HAR-shaped batches (inputs standard normal, labels uniform)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, batch, steps, features)).astype("float32")
    y = rng.integers(0, CLASSES, size=(n, batch)).astype("int64")
    return x, y


def load() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------ PyTorch (worker process)


def torch_worker(args) -> int:
    """Answer one JSON command a line on stdin: build a model (of the default shape, or the
    steps, features, units and batch given), time training or inference on --torch-device."""
    import warnings

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.torch_device)
    warnings.filterwarnings("ignore", "Using padding='same' with even kernel")  # kernel 8: fine

    class Net(torch.nn.Module):
        def __init__(self, name, features, units):
            super().__init__()
            kind, layers, bi = TORCH_SPECS[name]
            self.dirs = 2 if bi else 1
            self.rnn = getattr(torch.nn, kind)(
                features, units, num_layers=layers, bidirectional=bi, batch_first=True
            )
            self.out = torch.nn.Linear(units * self.dirs, CLASSES)

        def forward(self, x):
            _, state = self.rnn(x)
            h = state[0] if isinstance(state, tuple) else state  # (layers * dirs, batch, units)
            return self.out(torch.cat(list(h[-self.dirs :]), dim=-1))  # last layer's final states

    class FCNNet(torch.nn.Module):
        """The zoo's RNN-FCN at its defaults: a recurrent layer over the shuffled input (one
        step a channel), dropout, three Conv1d blocks (squeeze-and-excitation after the first
        two in mlstm_fcn), average pooling, the two joined, a linear head."""

        def __init__(self, name):
            from zoo.models import model_defaults
            from zoo.models.fcn import SE_REDUCTION, filter_sizes, kernel_sizes

            super().__init__()
            kind, squeeze = FCN_SPECS[name]
            hp = model_defaults(name)
            assert hp["shuffle"] and not hp.get("attention")  # the defaults this twin mirrors
            self.rnn = getattr(torch.nn, kind)(STEPS, hp["units"], batch_first=True)
            self.dropout = torch.nn.Dropout(hp["dropout"])
            widths, blocks, before = filter_sizes(hp["filters"]), [], FEATURES
            kernels = kernel_sizes(hp["kernel_size"])
            for i, (width, k) in enumerate(zip(widths, kernels, strict=True)):
                conv = torch.nn.Conv1d(before, width, k, padding="same")
                torch.nn.init.kaiming_uniform_(conv.weight)
                se = None
                if squeeze and i < 2:
                    hidden = max(1, width // SE_REDUCTION)
                    se = torch.nn.Sequential(
                        torch.nn.Linear(width, hidden, bias=False),
                        torch.nn.ReLU(),
                        torch.nn.Linear(hidden, width, bias=False),
                        torch.nn.Sigmoid(),
                    )
                blocks.append(torch.nn.ModuleList([conv, torch.nn.BatchNorm1d(width), se]))
                before = width
            self.blocks = torch.nn.ModuleList(blocks)
            self.out = torch.nn.Linear(hp["units"] + widths[-1], CLASSES)

        def forward(self, x):
            _, state = self.rnn(x.transpose(1, 2))  # (batch, channels, steps): shuffled
            h = state[0] if isinstance(state, tuple) else state
            r = self.dropout(h[-1])
            y = x.transpose(1, 2)  # Conv1d wants channels first
            for conv, norm, se in self.blocks:
                y = torch.relu(norm(conv(y)))
                if se is not None:
                    y = y * se(y.mean(-1)).unsqueeze(-1)
            return self.out(torch.cat([r, y.mean(-1)], dim=-1))

    net = opt = xs = ys = one = many = None
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train():
        net.train()
        for xb, yb in zip(xs, ys, strict=True):
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
        sync()

    def infer(batch, calls):
        net.eval()  # dropout off, batch normalisation's running statistics, as Keras' predict
        with torch.inference_mode():
            for _ in range(calls):
                net(batch)
        sync()

    print(json.dumps({"ready": torch.__version__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "build":
            steps, features = cmd.get("steps", STEPS), cmd.get("features", FEATURES)
            batch = cmd.get("batch", args.batch)
            x, y = batches(args.steps, batch, steps=steps, features=features)
            xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            one = torch.from_numpy(x[0, :1]).to(device)
            many = torch.from_numpy(np.concatenate(x)[:256]).to(device)
            if cmd["model"] in FCN_SPECS:  # at the zoo's defaults, the HAR shape
                net = FCNNet(cmd["model"]).to(device)
            else:
                net = Net(cmd["model"], features, cmd.get("units", UNITS)).to(device)
            params = sum(p.numel() for p in net.parameters())
            opt = torch.optim.Adam(net.parameters(), 1e-3)
            train(), infer(one, 2), infer(many, 1)  # warm-up
            device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
            result = {"device": device_name, "params": params}
        elif cmd["op"] == "quit":
            return 0
        else:
            torch.set_num_threads(cmd.get("threads", args.threads))
            result = timed(cmd["op"], train, infer, one, many, args, batch=len(xs[0]))
        print(json.dumps(result), flush=True)
    return 0


class TorchClient:
    """The PyTorch worker process, driven one command at a time (so never running alongside
    TensorFlow)."""

    def __init__(self, args, device: str = "cpu"):
        cmd = [sys.executable, __file__, "--torch-worker", "--threads", str(args.threads)]
        cmd += ["--batch", str(args.batch), "--steps", str(args.steps), "--torch-device", device]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = json.loads(self.proc.stdout.readline())["ready"]

    def __call__(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker stopped; see its error above")
        return json.loads(line)

    def close(self):
        with contextlib.suppress(Exception):
            self(op="quit")
        self.proc.wait(timeout=30)


def torch_client(args, device: str = "cpu"):
    if args.no_torch:
        return None
    try:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print("PyTorch not installed (pip install -e '.[bench]'): no PyTorch column.")
            return None
    except Exception:
        return None
    return TorchClient(args, device)


def timed(op: str, train, infer, one, many, args, batch: int | None = None) -> dict:
    """One timed round: training samples/s (`args.steps` batches of `batch`, default
    `args.batch`), batch-1 latency (ms), or batch-256 samples/s."""
    start_load = load()
    if op == "train":
        t = time.perf_counter()
        train()
        value = args.steps * (batch or args.batch) / (time.perf_counter() - t)
    elif op == "latency":
        times = []
        for _ in range(LATENCY_CALLS):
            t = time.perf_counter()
            infer(one, 1)
            times.append(time.perf_counter() - t)
        value = 1e3 * statistics.median(times)
    else:
        t = time.perf_counter()
        infer(many, 2)
        value = 2 * len(many) / (time.perf_counter() - t)
    return {"value": value, "load": (start_load + load()) / 2}


# ------------------------------------------------------------------ Keras


def set_tf_threads(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


@contextlib.contextmanager
def layers_as(lstm=None, gru=None):
    """Build zoo models with `lstm` as every LSTM layer and `gru` as every GRU layer,
    bidirectional or not (None: as the registry builds them). Every family builds its
    recurrent layers through `zoo.models.recurrent.layer_class`."""
    from zoo.models import recurrent

    saved = recurrent.layer_class
    chosen = {"lstm": lstm, "gru": gru}
    recurrent.layer_class = lambda cell, bidirectional: (
        chosen.get(cell) or saved(cell, bidirectional)
    )
    try:
        yield
    finally:
        recurrent.layer_class = saved


@contextlib.contextmanager
def rnn_path(path: str | None):
    """RNN_ZOO_RNN_PATH=`path` (zoo.scan) while a model is traced; None leaves it as it is."""
    if path is None:
        yield
        return
    saved = os.environ.get("RNN_ZOO_RNN_PATH")
    os.environ["RNN_ZOO_RNN_PATH"] = path
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RNN_ZOO_RNN_PATH")
        else:
            os.environ["RNN_ZOO_RNN_PATH"] = saved


def keras_configs(name: str, backend: str) -> dict:
    """The Keras configurations of one model on `backend`: name -> (function building it
    compiled, the zoo.scan path forced while it is traced, or None)."""
    import keras

    from zoo import create_model
    from zoo.fused import FusedLSTM, NativeLSTM
    from zoo.xla import XLA_MIN_SAMPLE_STEPS, use_xla

    def build(jit, **layers):
        def make():
            with layers_as(**layers):
                model = create_model(name, (STEPS, FEATURES), CLASSES, **model_settings(name))
            model.compile(
                optimizer="adam",
                loss="sparse_categorical_crossentropy",
                # the zoo's choice for a long run: steady-state speed is measured here
                jit_compile=use_xla(model, "auto", XLA_MIN_SAMPLE_STEPS) if jit == "zoo" else jit,
            )
            return model

        return make

    plain = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    if backend == "jax":
        return {
            "zoo": (build("zoo"), None),
            "keras": (build("auto", **plain), None),
            "scan": (build("zoo"), "scan"),
            "loop": (build("zoo"), "loop"),
        }
    if backend != "tensorflow":
        return {"zoo": (build("zoo"), None), "keras": (build("auto", **plain), None)}
    return {
        "zoo": (build("zoo"), None),
        "keras": (build(False, **plain), None),
        "keras_xla": (build(True, **plain), None),
        "fused": (build(False, lstm=FusedLSTM), None),
        "native": (build(False, lstm=NativeLSTM), None),
    }


def keras_runner(make, args, x, y, path=None):
    import keras

    model = make()
    xs = [keras.ops.convert_to_tensor(b) for b in x]
    ys = [keras.ops.convert_to_tensor(b) for b in y]
    one = x[0, :1]
    many = np.concatenate(x)[:256]
    if len(many) < 256:
        many = np.resize(many, (256, *many.shape[1:]))

    def train():
        for xb, yb in zip(xs, ys, strict=True):
            model.train_on_batch(xb, yb)

    def infer(batch, calls):
        for _ in range(calls):
            model.predict_on_batch(batch)

    t = time.perf_counter()
    with rnn_path(path):  # every function traced now, at every shape timed later
        train(), infer(one, 2), infer(many, 1)  # warm-up, with tracing and XLA compiling
    setup = time.perf_counter() - t
    return model, (lambda op: timed(op, train, infer, one, many, args)), setup


def loop_signature(model, forced: str | None, batch: int) -> tuple:
    """What a configuration runs: its layers (the zoo's `Scan*` named as the Keras layer they
    are), whether it is compiled with XLA, and on JAX the zoo.scan path each LSTM or GRU takes
    (Keras' own LSTM path is its step loop without a GPU). Configurations alike are timed once."""
    import keras

    from zoo.scan import ScanGRU, ScanLSTM, choose_path

    same = {"ScanLSTM": "LSTM", "ScanGRU": "GRU"}
    names = tuple(same.get(type(layer).__name__, type(layer).__name__) for layer in model._flatten_layers())  # fmt: skip
    if keras.backend.backend() != "jax":
        return names, bool(model.jit_compile)
    import jax

    platform, paths = jax.default_backend(), []
    for layer in model._flatten_layers():
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            cell = "lstm" if isinstance(layer, keras.layers.LSTM) else "gru"
            zoo_layer = isinstance(layer, (ScanLSTM, ScanGRU))
            with rnn_path(forced):
                path = choose_path(platform, cell, layer.units, batch) if zoo_layer else "keras"
            if path == "keras" and cell == "lstm" and platform != "gpu":
                path = "loop"
            paths.append(path)
    names = tuple("LSTM" if n in ("NativeLSTM", "FusedLSTM") else n for n in names)
    return names, bool(model.jit_compile), tuple(paths)


# ------------------------------------------------------------------ the run


def ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b."""
    return statistics.median(p / q for p, q in zip(a, b, strict=True))


def bench_model(name: str, args, client) -> dict:
    import keras

    x, y = batches(args.steps, args.batch)
    runners, setup, same_as, built = {}, {}, {}, {}
    for config, (make, path) in keras_configs(name, args.backend).items():
        model, run, setup[config] = keras_runner(make, args, x, y, path)
        signature = loop_signature(model, path, args.batch)
        if config == "zoo":
            params = {"zoo": sum(int(np.prod(w.shape)) for w in model.trainable_weights)}
            from zoo.fused import FusedLSTM, NativeLSTM, fused_path_available, native_path_available

            kinds = {type(layer) for layer in model._flatten_layers()}
            compiler = "torch.compile" if args.backend == "torch" else "XLA"
            zoo_uses = compiler if model.jit_compile else "default"
            if fused_path_available() and FusedLSTM in kinds:
                zoo_uses = "FusedLSTM"
            if native_path_available() and NativeLSTM in kinds:
                zoo_uses = "NativeLSTM" if zoo_uses == "default" else f"NativeLSTM, {zoo_uses}"
            if args.backend == "jax" and signature[2]:
                zoo_uses = f"{'+'.join(sorted(set(signature[2])))} path, XLA"
        twin = built.get(signature)
        if twin is not None:  # the same network compiled the same way: time it once
            same_as[config] = twin
            continue
        built[signature] = config
        runners[config] = run
    if client is not None:
        t = time.perf_counter()
        params["torch"] = client(op="build", model=name)["params"]
        setup["torch"] = time.perf_counter() - t
        runners["torch"] = lambda op: client(op=op)
        if args.threads != 1:  # libgomp's spinning threads collapse on a loaded machine
            runners["torch_1t"] = lambda op: client(op=op, threads=1)

    results = {c: {op: [] for op in ("train", "latency", "infer256")} for c in runners}
    loads = []
    order = list(runners)
    for r in range(args.repeats):
        turn = order[r % len(order) :] + order[: r % len(order)]  # rotate who goes first
        for op in ("train", "latency", "infer256"):
            for config in turn:
                out = runners[config](op)
                results[config][op].append(out["value"])
                loads.append(out["load"])
    for config, twin in same_as.items():
        results[config] = results[twin]
    keras.backend.clear_session()
    return {
        "model": name,
        "zoo_uses": zoo_uses,
        "results": results,
        "setup": setup,
        "params": params,
        "load": (min(loads), statistics.mean(loads), max(loads)),
    }


def lstm_op_times(args) -> dict | None:
    """Milliseconds a call of the zoo's C++ LSTM op, forward and backward, at the shapes of
    `stacked_lstm`'s two layers (inputs of FEATURES and of UNITS), median of rounds timed in
    turns; None where the op is not built."""
    from zoo.kernels import lstm_op

    library = lstm_op()
    if library is None:
        return None
    import tensorflow as tf

    rng = np.random.default_rng(0)
    calls = {}
    for d in (FEATURES, UNITS):
        x = tf.constant(rng.normal(size=(STEPS, args.batch, d)).astype("float32"))
        zeros = tf.zeros((args.batch, UNITS))
        kernel = tf.constant(0.1 * rng.normal(size=(d, 4 * UNITS)).astype("float32"))
        r = tf.constant(0.1 * rng.normal(size=(UNITS, 4 * UNITS)).astype("float32"))
        bias = tf.zeros((4 * UNITS,))
        _, c, gates = library.zoo_lstm_forward(x, zeros, zeros, kernel, r, bias)
        dh = tf.constant(rng.normal(size=(STEPS, args.batch, UNITS)).astype("float32"))
        calls[(d, "forward")] = tf.function(
            lambda x=x, z=zeros, k=kernel, r=r, b=bias: library.zoo_lstm_forward(x, z, z, k, r, b)
        )
        calls[(d, "backward")] = tf.function(
            lambda r=r, z=zeros, c=c, g=gates, dh=dh: library.zoo_lstm_backward(
                r, z, c, g, dh, tf.zeros_like(dh)
            )
        )
    times = {key: [] for key in calls}
    for call in calls.values():
        call()  # tracing
    for _ in range(args.repeats):
        for key, call in calls.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                call()
            times[key].append(1e3 * (time.perf_counter() - t) / args.steps)
    return {key: statistics.median(v) for key, v in times.items()}


def har_parse_times(path: Path):
    """Seconds to load the HAR arrays from the zip (cold) and from the cache just written."""
    if not path.exists():
        return None
    from zoo.tasks.har import load_arrays

    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        _, facts = load_arrays(path, cache_dir=cache)
        cold = time.perf_counter() - t
        assert not facts["from_cache"]
        t = time.perf_counter()
        _, facts = load_arrays(path, cache_dir=cache)
        cached = time.perf_counter() - t
        assert facts["from_cache"]
    return cold, cached, load()


def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


KERAS_LABELS = {
    "zoo": "zoo",
    "keras": "keras (TF default)",
    "scan": "scan",
    "loop": "loop",
    "keras_xla": "keras jit_compile=True",
    "fused": "FusedLSTM everywhere",
    "native": "NativeLSTM everywhere",
}


def tables(rows: list[dict], torch_on: bool) -> str:
    med = statistics.median
    keras_on = [c for c in KERAS_LABELS if c in rows[0]["results"]]
    xla_on = "keras_xla" in keras_on
    out = ["### Training (samples/s, median of rounds; ratios are medians of per-round ratios)", ""]
    head = ["model"] + [KERAS_LABELS[c] if xla_on else c for c in keras_on]
    head += (
        ["PyTorch", "PyTorch 1 thread", "zoo / PyTorch", "zoo / best PyTorch"] if torch_on else []
    )
    paths = [c for c in ("scan", "loop") if c in keras_on]
    head += ["zoo / keras"] + (["zoo / xla", "xla / keras"] if xla_on else [])
    head += [f"{c} / keras" for c in paths]
    head += ["zoo uses", "load avg (min-mean-max)"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        res = {c: r["train"] for c, r in row["results"].items()}
        cells = [row["model"], *(fmt(med(res[c])) for c in keras_on)]
        if torch_on:
            one = res.get("torch_1t", res["torch"])
            best = max(res["torch"], one, key=med)
            cells += [fmt(med(res["torch"])), fmt(med(one))]
            cells += [f"{ratio(res['zoo'], res['torch']):.2f}", f"{ratio(res['zoo'], best):.2f}"]
        cells += [f"{ratio(res['zoo'], res['keras']):.2f}"]
        if xla_on:
            cells += [f"{ratio(res['zoo'], res['keras_xla']):.2f}"]
            cells += [f"{ratio(res['keras_xla'], res['keras']):.2f}"]
        cells += [f"{ratio(res[c], res['keras']):.2f}" for c in paths]
        cells += [row["zoo_uses"]]
        cells += ["-".join(f"{v:.1f}" for v in row["load"])]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "### Inference (batch 1 latency in ms, lower is better; batch 256 in samples/s)",
        "",
    ]
    configs = list(keras_on)
    configs += [c for c in ("torch", "torch_1t") if torch_on and c in rows[0]["results"]]
    head = ["model"] + [f"{c} b1 ms" for c in configs] + [f"{c} b256/s" for c in configs]
    if torch_on:
        head += ["zoo b1 / PyTorch", "zoo b256 / PyTorch"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        res = row["results"]
        cells = [row["model"]]
        cells += [fmt(med(res[c]["latency"]), 2) for c in configs]
        cells += [fmt(med(res[c]["infer256"])) for c in configs]
        if torch_on:
            cells += [f"{ratio(res['zoo']['latency'], res['torch']['latency']):.2f}"]
            cells += [f"{ratio(res['zoo']['infer256'], res['torch']['infer256']):.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Trainable parameters (zoo, PyTorch): " + "; ".join(
        f"{row['model']} " + ", ".join(f"{n:,}" for n in row["params"].values()) for row in rows
    )]  # fmt: skip
    out += ["", "First-call cost (tracing, XLA compiling, warm-up), seconds:", ""]
    for row in rows:
        out.append(
            f"- {row['model']}: " + ", ".join(f"{c} {s:.1f}" for c, s in row["setup"].items())
        )
    return "\n".join(out)


# ------------------------------------------------------------------ --gpu: issue 28's table


def gpu_case(shape: tuple, name: str, args, client) -> dict:
    """One shape and model of the GPU table: training samples/s of each zoo.scan path (`keras`
    with plain Keras layers), the policy's pick and PyTorch, in interleaved rounds."""
    import jax
    import keras

    from zoo import create_model
    from zoo.scan import choose_path

    steps, features, units, batch = shape
    x, y = batches(args.steps, batch, steps=steps, features=features)
    x, y = x.reshape(-1, steps, features), y.reshape(-1)
    cell = "gru" if name == "gru" else "lstm"
    policy = choose_path(jax.default_backend(), cell, units, batch)
    runners, setup = {}, {}
    for path in dict.fromkeys([*args.paths, policy]):
        keras.utils.set_random_seed(0)
        plain = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU} if path == "keras" else {}
        with layers_as(**plain):
            model = create_model(name, (steps, features), CLASSES, units=units)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

        def train(model=model):
            model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)

        t = time.perf_counter()
        with rnn_path(path):  # traced and compiled now
            train()
        setup[path] = time.perf_counter() - t
        runners[path] = train
    if client is not None:
        t = time.perf_counter()
        client(op="build", model=name, steps=steps, features=features, units=units, batch=batch)
        setup["torch"] = time.perf_counter() - t
    results = {c: [] for c in [*runners, *(["torch"] if client else [])]}
    order = list(results)
    for r in range(args.repeats):
        for config in order[r % len(order) :] + order[: r % len(order)]:
            if config == "torch":
                results[config].append(client(op="train")["value"])
                continue
            t = time.perf_counter()
            runners[config]()
            results[config].append(len(x) / (time.perf_counter() - t))
    keras.backend.clear_session()
    return {"shape": shape, "model": name, "policy": policy, "results": results, "setup": setup}


def shape_label(shape: tuple) -> str:
    steps, features, units, batch = shape
    return f"{steps}x{features}, {units}, {batch}"


def gpu_tables(rows: list[dict], paths: list[str], torch_on: bool, platform: str) -> str:
    """The GPU table, and the zoo.scan.POLICY rows it suggests."""
    med = statistics.median
    base = "torch" if torch_on else ("keras" if "keras" in paths else None)  # of the ratios
    ratios = [*paths, "zoo"] if base else []
    out = [
        "### Training (samples/s, median of rounds; ratios are medians of per-round ratios)",
        "",
    ]
    head = ["shape (steps x features, units, batch)", "model", *paths]
    head += ["PyTorch"] if torch_on else []
    head += [f"{c} / {'PyTorch' if torch_on else 'keras'}" for c in ratios]
    head += ["zoo takes", "fastest path"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fastest = {}
    for row in rows:
        res = {**row["results"], "zoo": row["results"][row["policy"]]}
        best = max(paths, key=lambda c: med(res[c]))
        fastest[(row["shape"], row["model"])] = best
        cells = [shape_label(row["shape"]), row["model"], *(fmt(med(res[c])) for c in paths)]
        cells += [fmt(med(res["torch"]))] if torch_on else []
        cells += [f"{ratio(res[c], res[base]):.2f}" for c in ratios]
        cells += [row["policy"], best]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "First-call cost (tracing, compiling, warm-up), seconds:", ""]
    for row in rows:
        setup = ", ".join(f"{c} {v:.1f}" for c, v in row["setup"].items())
        out.append(f"- {shape_label(row['shape'])} {row['model']}: {setup}")
    out += [
        "",
        "Suggested `zoo.scan.POLICY` rows (the single-layer model's fastest path, by units and "
        "batch; check them against the table before use):",
        "",
        "```python",
    ]
    for cell in ("lstm", "gru"):
        points = sorted(
            {
                (shape[2], shape[3]): path
                for (shape, model), path in fastest.items()
                if model == cell
            }.items()  # fmt: skip
        )
        for (units, batch), path in points:
            out.append(f'    ("{platform}", "{cell}", {units}, {batch}, "{path}"),')
    out.append("```")
    return "\n".join(out)


def gpu_main(args, argv) -> int:
    """--gpu: issue 28's table on Keras' JAX backend, never importing TensorFlow."""
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch shares the GPU
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    from zoo import backend

    try:
        backend.load()
    except backend.BackendError as err:
        print(f"benchmark_speed.py: error: {err}", file=sys.stderr)
        return 2
    import jax
    import keras

    platform = jax.default_backend()
    if args.device == "gpu" and platform != "gpu":
        print(
            f"benchmark_speed.py: error: --gpu found no GPU for JAX (its devices: "
            f"{jax.devices()}); --device cpu runs the table on the CPU",
            file=sys.stderr,
        )
        return 2
    client = torch_client(args, "cuda" if args.device == "gpu" else "cpu")
    rows = []
    try:
        for shape, models in args.shapes.items():
            for name in models:
                print(f"benchmarking {shape_label(shape)} {name} ...", file=sys.stderr, flush=True)
                rows.append(gpu_case(shape, name, args, client))
                done = ", ".join(
                    f"{c} {statistics.median(v):,.0f}" for c, v in rows[-1]["results"].items()
                )  # as it goes: a run cut short still leaves its figures
                print(f"  samples/s: {done}", file=sys.stderr, flush=True)
    finally:
        if client is not None:
            client.close()
    device = jax.devices()[0].device_kind
    cmd = "python scripts/benchmark_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])  # fmt: skip
    print(f"## Speed on {device}: `{cmd.strip()}`\n")
    print(
        f"Keras {keras.__version__} on JAX {jax.__version__} ({platform})"
        + (f", PyTorch {client.version}" if client else "")
        + f"; Adam; {args.repeats} rounds of {args.steps} batches; Keras trains with `model.fit` "
        "on NumPy arrays, PyTorch on tensors already on the device.\n"
    )
    print(gpu_tables(rows, args.paths, client is not None, platform))
    print(f"\nTensorFlow imported: {'yes' if 'tensorflow' in sys.modules else 'no'}.")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.torch_worker:
        return torch_worker(args)
    if args.gpu:
        return gpu_main(args, argv)
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from zoo import backend

    try:
        backend.load()  # TensorFlow quietly
    except backend.BackendError as err:
        print(f"benchmark_speed.py: error: {err}", file=sys.stderr)
        return 2
    import keras

    if args.backend == "tensorflow":
        set_tf_threads(args.threads)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # predict_on_batch at two shapes: retracing warnings
    elif args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    engine = importlib.import_module(args.backend)

    client = torch_client(args)
    try:
        rows = []
        for name in args.models:
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            rows.append(bench_model(name, args, client))
        op_times = lstm_op_times(args) if args.backend == "tensorflow" else None
        har = har_parse_times(args.data)
    finally:
        if client is not None:
            client.close()
    cmd = "python scripts/benchmark_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])  # fmt: skip
    print(f"## Speed: `{cmd.strip()}`\n")
    print(
        f"Keras {keras.__version__} on {args.backend} {engine.__version__}"
        + (f", PyTorch {client.version}" if client else "")
        + f"; {args.threads} threads, {os.cpu_count()} CPUs; batch {args.batch}, {STEPS}x"
        + f"{FEATURES} inputs, {UNITS} units (the RNN-FCN models: their own defaults), Adam; "
        + f"{args.repeats} rounds of {args.steps} batches.\n"
    )
    print(tables(rows, client is not None))
    if args.json is not None:  # every round, for a comparison of runs beyond their medians
        from zoo import files  # like every zoo import here: after the backend is set

        files.write_json(args.json, {"command": cmd.strip(), "models": rows})
    if op_times is not None:
        print(
            f"\nThe C++ LSTM op alone (batch {args.batch}, {STEPS} steps, {UNITS} units; ms a call, "
            f"median of {args.repeats} rounds of {args.steps}): "
            + "; ".join(
                f"input {d}: forward {op_times[(d, 'forward')]:.2f}, "
                f"backward {op_times[(d, 'backward')]:.2f}"
                for d in (FEATURES, UNITS)
            )
            + "."
        )
    if har is None:
        print(f"\nHAR parse: skipped ({args.data} not found).")
    else:
        print(f"\nHAR parse ({args.data.name}): cold {har[0]:.2f} s, from cache {har[1]:.3f} s (load {har[2]:.1f}).")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
