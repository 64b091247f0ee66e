"""Model inference on ONNX Runtime.

Two operators (the seed notebook's "Model inference" section; its third, ``EventTrigger``, which
turns class scores into events, lives in ``signals/events.py``)::

    s.Inference("mouse_velocity", "gru.onnx", stateful=True, name="gesture_probs")
    s.WindowedInference("wave", "cnn.onnx", window_size=128, window_overlap=32, output_shape=(3,))

Models. ``model`` is the path of an ``.onnx`` file. A relative path is resolved against
``base_dir`` (the spec file's directory, set by whoever builds the operator from a spec) or, when
``base_dir`` is None, the current directory at construction. ``base_dir`` is an ordinary
parameter: it is serialised with ``model`` kept exactly as written, so ``to_dict`` round-trips
and a spec stays relocatable when ``base_dir`` is left out of it and supplied by the loader.
Each operator creates ONE ``onnxruntime.InferenceSession`` at construction (``threads`` intra-op
threads, one inter-op thread, CPU provider), so a missing, corrupt or incompatible model is an
``OperatorError`` when the operator is built, i.e. when a spec is validated. The per-sample
feature shape can only be checked against the first chunk; that error names the model's input
shape and the chunk's shape.

Names and layouts come from the model's own signature unless given: the model's inputs and
outputs are read from the session, and every model input must have a leading batch dimension
that is dynamic or 1. Outputs have the same leading dimensions as the data input. Streams are
cast to the model's float type (float64 -> float32); non-float streams are errors. Outputs keep
the model's dtype (usually float32).

onnxruntime is imported when the first model operator is built, so importing
``genki_signals.signals`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from genki_signals.errors import OperatorError
from genki_signals.signals.base import NAME_PATTERN, StatefulOperator, with_node_defaults

__all__ = ["Inference", "WindowedInference"]

_NO_ROWS = np.empty(0, dtype=np.intp)

# ONNX tensor types that streams are fed as (data inputs must be one of the float ones).
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                "tensor(float16)": np.float16}
_TYPES = {**_FLOAT_TYPES, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
          "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}

Dim = int | str | None  # an onnxruntime NodeArg dimension: int, symbolic name or unknown


def _dynamic(d: Dim) -> bool:
    return not isinstance(d, int) or d < 0


def _fmt(shape: Sequence[Dim]) -> str:
    """``(N, T, 2)``: symbolic dims by name, unknown ones as ``?``."""
    dims = [str(d) if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) and d else "?")
            for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _fits(shape: tuple[int, ...], model_shape: Sequence[Dim]) -> bool:
    """Whether a concrete shape fits a model shape (dynamic dims accept any size)."""
    return len(shape) == len(model_shape) and all(
        _dynamic(m) or m == d for d, m in zip(shape, model_shape))


def _seed_order(first: Any, second: Any) -> tuple[Any, Any]:
    """Accept the seed's ``(model, input)`` order: a model path is never a valid stream name."""
    if isinstance(first, str) and isinstance(second, str) and first.endswith(".onnx") \
            and not NAME_PATTERN.match(first) and NAME_PATTERN.match(second):
        return second, first
    return first, second


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise OperatorError("model inference needs the 'onnxruntime' package "
                            "(pip install onnxruntime)") from exc
    return onnxruntime


class _OnnxOperator(StatefulOperator, abstract=True):
    """Shared model loading, name resolution and input checks of the model operators."""

    input: str
    model: str
    node_defaults = ("threads", "base_dir")

    # -------------------------------------------------------------- loading
    def _load(self, model: Any, base_dir: Any, threads: Any) -> None:
        """Validate the model parameters and create the session (sets ``model_path``)."""
        if not isinstance(model, str) or not model:
            raise self._fail("model", f"must be the path of an .onnx file, got {model!r}")
        if base_dir is not None and (not isinstance(base_dir, str) or not base_dir):
            raise self._fail("base_dir", f"must be a directory path or null, got {base_dir!r}")
        self.model = model
        self.base_dir = base_dir
        self.threads = self.check_int("threads", threads, minimum=1)
        path = Path(model).expanduser()
        if not path.is_absolute():
            path = Path(base_dir or ".").expanduser() / path
        self.model_path: Path = path.resolve()
        where = f"'{model}'" + (f" (resolved to '{self.model_path}')"
                                if str(self.model_path) != model else "")
        self._model_label = f"model '{model}'"
        if not self.model_path.is_file():
            raise OperatorError(f"{self.describe()}: model file {where} not found"
                                + ("" if base_dir else " (relative paths are resolved against "
                                   "base_dir, or the current directory when it is null)"))
        ort = _onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: we rewrap them with context
        try:
            self._session = ort.InferenceSession(str(self.model_path), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types: rewrap with context
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OperatorError(f"{self.describe()}: model file {where} is not a valid ONNX "
                                f"model onnxruntime can load: {reason}") from None
        self._inputs = {a.name: a for a in self._session.get_inputs()}
        self._outputs = {a.name: a for a in self._session.get_outputs()}

    def _model_fail(self, message: str) -> OperatorError:
        return OperatorError(f"{self.describe()}: {self._model_label}: {message}")

    def _pick(self, field: str, value: Any, names: Sequence[str], kind: str) -> str:
        """Validate an explicit input/output name against the model's names."""
        if not isinstance(value, str) or value not in names:
            raise self._model_fail(f"field '{field}': no model {kind} named {value!r} "
                                   f"(model {kind}s: {', '.join(names)})")
        return value

    def _pick_list(self, field: str, value: Any, names: Sequence[str], kind: str) -> list[str]:
        if not isinstance(value, (list, tuple)) or len(set(value)) != len(value):
            raise self._fail(field, f"must be a list of distinct model {kind} names, "
                                    f"got {value!r}")
        return [self._pick(field, v, names, kind) for v in value]

    def _data_type(self, name: str) -> type:
        """numpy dtype of a data input; only float model inputs can take a stream."""
        onnx_type = self._inputs[name].type
        if onnx_type not in _FLOAT_TYPES:
            raise self._model_fail(f"input '{name}' has type {onnx_type}; a stream is fed as "
                                   f"float ({', '.join(_FLOAT_TYPES)})")
        return _FLOAT_TYPES[onnx_type]

    # -------------------------------------------------------------- running
    def _check_input(self, x: np.ndarray) -> None:
        """The first non-empty chunk must fit the model's sample shape, later ones keep it.
        (The dtype is checked when a chunk is cast to the model's float type.)"""
        if self._sample_shape is None and x.shape[0] == 0:
            return  # nothing known yet
        if self._sample_shape is not None:
            if x.shape[1:] != self._sample_shape:
                raise self._shape_error(x, self._sample_shape)
        elif not _fits(x.shape[1:], self._model_sample):
            raise self._shape_error(x, self._model_sample)

    def _cast(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the model's float dtype; non-float streams are errors."""
        if x.dtype.kind != "f":
            raise OperatorError(
                f"{self.describe()}: input '{self.input}' must be floating point for "
                f"{self._model_label} (model input '{self._data_name}' is "
                f"{self._inputs[self._data_name].type}), got dtype {x.dtype}")
        return x.astype(self._model_dtype)

    def _shape_error(self, x: np.ndarray, expected: tuple[Dim, ...]) -> OperatorError:
        arg = self._inputs[self._data_name]
        return OperatorError(
            f"{self.describe()}: input '{self.input}' does not fit {self._model_label}: model "
            f"input '{arg.name}' has shape {_fmt(arg.shape)}, so each sample must have shape "
            f"{_fmt(expected)}; got a chunk of shape {x.shape} (samples of shape "
            f"{_fmt(x.shape[1:])})")

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._session.run(self._fetch, feed)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            shapes = ", ".join(f"{k}: {v.shape}" for k, v in feed.items())
            raise OperatorError(f"{self.describe()}: {self._model_label} failed on inputs "
                                f"({shapes}): {reason}") from None


class Inference(_OnnxOperator):
    """Run an ONNX model on every sample of a stream, optionally carrying a recurrent state.

    **Stateless** (``stateful=False``): the model maps a batch of samples ``(N, *S)`` to
    ``(N, *O)``; output row ``i`` is the model applied to input row ``i``. With a dynamic batch
    dimension the whole chunk runs in ONE ``run`` call; a model with a fixed batch of 1 is run
    once per sample (correct, slower). The model must have exactly one input.

    **Stateful** (``stateful=True``, RNN/GRU): the model takes the data input plus one or more
    state inputs and returns the output plus the next states. Samples are fed in order and the
    states carried across samples and chunks, so the output never depends on the chunking; the
    states start at zeros of the state inputs' shapes (dynamic dims count as 1) or at
    ``initial_state`` (one nested list per state input), and ``reset()`` restores them.
    A data input of shape ``(1, T, *S)`` with a *dynamic* ``T`` runs a whole chunk as one
    sequence in ONE call, starting from the carried state; this equals stepping sample by sample
    for any recurrent model whose state output is the state after the last step (a GRU/LSTM's
    ``Y_h``). Otherwise (``(1, 1, *S)`` or ``(1, *S)``), the model is run once per sample. The
    test GRU (``make_gru``) has a dynamic ``T``, so it takes the one-call path.

    Names default from the model's signature: stateful, the data input is ``input_name``, or the
    one input not in ``state_inputs``, or else the model's FIRST input with all the others as
    state inputs; the output is ``output_name`` or the first output not in ``state_outputs``;
    state outputs pair with state inputs by order (``state_outputs``, or the remaining outputs
    in model order, which must be as many as the state inputs).

    The seed's ``Inference(model, input_signal=...)`` on a PyTorch object is not supported: the
    model must be exported to ONNX. The seed's argument order ``(model_path, input)`` is
    accepted (a path ending in ``.onnx`` is never a stream name) and serialised in contract order.
    """

    def __init__(self, input: str, model: str, name: str | None = None, *,
                 stateful: bool = False, input_name: str | None = None,
                 output_name: str | None = None, state_inputs: list[str] | None = None,
                 state_outputs: list[str] | None = None,
                 initial_state: list[Any] | None = None, threads: int = 1,
                 base_dir: str | None = None) -> None:
        input, model = _seed_order(input, model)
        super().__init__([input], name)
        self.input = input
        self.stateful = self.check_bool("stateful", stateful)
        self._load(model, base_dir, threads)
        ins, outs = list(self._inputs), list(self._outputs)
        if input_name is not None:
            self._pick("input_name", input_name, ins, "input")
        if output_name is not None:
            self._pick("output_name", output_name, outs, "output")
        if self.stateful:
            data, states_in = self._state_inputs(ins, input_name, state_inputs)
            out, states_out = self._state_outputs(outs, output_name, state_outputs, states_in)
        else:
            for field, value in (("state_inputs", state_inputs), ("state_outputs", state_outputs),
                                 ("initial_state", initial_state)):
                if value is not None:
                    raise self._fail(field, "is only used with stateful=True")
            data = input_name if input_name is not None else ins[0]
            if len(ins) != 1:
                raise self._model_fail(
                    f"the model has {len(ins)} inputs ({', '.join(ins)}) but a stateless "
                    f"Inference feeds exactly one; for a recurrent model with state inputs "
                    f"pass stateful=True")
            out, states_in, states_out = output_name if output_name else outs[0], [], []
        self.input_name, self.output_name = input_name, output_name
        self.state_inputs = None if state_inputs is None else list(state_inputs)
        self.state_outputs = None if state_outputs is None else list(state_outputs)
        self._data_name, self._out_name = data, out
        self._state_in, self._state_out = states_in, states_out
        self._fetch = [out, *states_out]
        self._model_dtype = self._data_type(data)
        self._plan_layout()
        self.initial_state = self._initial_states(initial_state)
        self.reset()

    # ----------------------------------------------------------------- setup
    def _state_inputs(self, ins: list[str], input_name: str | None,
                      state_inputs: Any) -> tuple[str, list[str]]:
        if state_inputs is not None:
            states = self._pick_list("state_inputs", state_inputs, ins, "input")
            rest = [i for i in ins if i not in states]
            if input_name is not None:
                data = input_name
            elif len(rest) == 1:
                data = rest[0]
            else:
                raise self._model_fail(f"cannot tell the data input among {', '.join(rest)}: "
                                       f"set input_name")
            if data in states:
                raise self._fail("input_name", f"'{data}' is also listed in state_inputs")
            unfed = [i for i in rest if i != data]
            if unfed:
                raise self._model_fail(f"model input(s) {', '.join(unfed)} would not be fed: "
                                       f"list them in state_inputs")
        else:
            data = input_name if input_name is not None else ins[0]
            states = [i for i in ins if i != data]
        if not states:
            raise self._model_fail(
                f"stateful=True needs a state input, but the model's only input is "
                f"'{data}' {_fmt(self._inputs[data].shape)}; export the RNN with its hidden "
                f"state as an input and output, or use stateful=False")
        return data, states

    def _state_outputs(self, outs: list[str], output_name: str | None, state_outputs: Any,
                       states_in: list[str]) -> tuple[str, list[str]]:
        if state_outputs is not None:
            states = self._pick_list("state_outputs", state_outputs, outs, "output")
            if output_name in states:
                raise self._fail("output_name", f"'{output_name}' is also in state_outputs")
            out = output_name or next((o for o in outs if o not in states), None)
            if out is None:
                raise self._model_fail("every model output is a state output: none is left "
                                       "for the prediction")
        else:
            out = output_name or outs[0]
            states = [o for o in outs if o != out]
        if len(states) != len(states_in):
            raise self._model_fail(
                f"{len(states_in)} state input(s) ({', '.join(states_in)}) but "
                f"{len(states)} state output(s) ({', '.join(states) or 'none'}); "
                f"set state_outputs to pair them")
        for i_name, o_name in zip(states_in, states):
            a, b = self._inputs[i_name].shape, self._outputs[o_name].shape
            fixed = all(not _dynamic(d) for d in (*a, *b))
            if fixed and tuple(a) != tuple(b):
                raise self._model_fail(f"state input '{i_name}' {_fmt(a)} and its paired "
                                       f"state output '{o_name}' {_fmt(b)} differ in shape")
        return out, states

    def _plan_layout(self) -> None:
        """Decide the leading dims (batch[, time]) of the data input and how chunks are run."""
        arg = self._inputs[self._data_name]
        shape = list(arg.shape)
        if not shape or (not _dynamic(shape[0]) and shape[0] != 1):
            raise self._model_fail(f"input '{arg.name}' has shape {_fmt(shape)}; Inference "
                                   f"needs a leading batch dimension that is dynamic or 1")
        time_axis = self.stateful and len(shape) >= 3 and (_dynamic(shape[1]) or shape[1] == 1)
        self._lead = 2 if time_axis else 1
        # Stateless: batch the chunk when the batch dim is dynamic. Stateful: run the chunk as
        # one sequence when the time dim is dynamic.
        self._whole_chunk = _dynamic(shape[1]) if time_axis else \
            (not self.stateful and _dynamic(shape[0]))
        self._model_sample: tuple[Dim, ...] = tuple(shape[self._lead:])
        out_shape = list(self._outputs[self._out_name].shape)
        if len(out_shape) < self._lead:
            raise self._model_fail(f"output '{self._out_name}' has shape {_fmt(out_shape)}; "
                                   f"it must start with the input's batch"
                                   f"{'/time' if self._lead == 2 else ''} dimension(s)")
        self._out_sample: tuple[Dim, ...] = tuple(out_shape[self._lead:])

    def _initial_states(self, initial_state: Any) -> list[Any] | None:
        """Zeros of each state input's shape, or the given values (validated); sets ``_init``."""
        self._init: list[np.ndarray] = []
        if initial_state is not None and (not isinstance(initial_state, (list, tuple))
                                          or len(initial_state) != len(self._state_in)):
            raise self._fail("initial_state", f"must be a list with one array per state input "
                                              f"({', '.join(self._state_in)}), got "
                                              f"{initial_state!r:.80}")
        for i, name in enumerate(self._state_in):
            arg = self._inputs[name]
            dtype = _TYPES.get(arg.type)
            if dtype is None:
                raise self._model_fail(f"state input '{name}' has unsupported type {arg.type}")
            if initial_state is None:
                state = np.zeros([1 if _dynamic(d) else d for d in arg.shape], dtype=dtype)
            else:
                state = np.asarray(initial_state[i], dtype=dtype)
                if not _fits(state.shape, arg.shape):
                    raise self._fail("initial_state", f"[{i}] has shape {state.shape} but state "
                                                      f"input '{name}' has shape "
                                                      f"{_fmt(arg.shape)}")
            self._init.append(state)
        return None if initial_state is None else [s.tolist() for s in self._init]

    def reset(self) -> None:
        super().reset()
        # The feed dict persists across runs; the carried states live in it, under their input
        # names, so the hot path only swaps the data array and the returned states.
        self._feed: dict[str, np.ndarray] = dict(zip(self._state_in,
                                                     (s.copy() for s in self._init)))
        self._empty = np.empty((0, *[0 if _dynamic(d) else d for d in self._out_sample]),
                               dtype=np.float32)
        self._out_known = False  # whether _empty has the real output row shape and dtype

    # ------------------------------------------------------------------- state
    def _state_keys(self) -> tuple[str, ...]:
        return ("states", "empty", "out_known")

    def _export_state(self) -> dict[str, Any]:
        """The recurrent states (one array per state input, in ``state_in`` order; none when
        stateless) and the output row shape learnt so far (what an empty chunk returns)."""
        return {"states": [self._feed[name] for name in self._state_in],
                "empty": self._empty, "out_known": self._out_known}

    def _import_state(self, state: dict[str, Any]) -> None:
        states, empty = state["states"], state["empty"]
        if not isinstance(states, list) or len(states) != len(self._state_in):
            raise OperatorError(f"{self.describe()}: state field 'states' must hold one array "
                                f"per state input ({', '.join(self._state_in) or 'none'})")
        for name, value, init in zip(self._state_in, states, self._init):
            if not isinstance(value, np.ndarray) or value.dtype != init.dtype \
                    or not _fits(value.shape, self._inputs[name].shape):
                got = (f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray)
                       else type(value).__name__)
                raise OperatorError(f"{self.describe()}: state for '{name}' must be a "
                                    f"{init.dtype} array of shape "
                                    f"{_fmt(self._inputs[name].shape)}, got {got}")
            self._feed[name] = value
        if not isinstance(empty, np.ndarray) or empty.shape[:1] != (0,):
            raise OperatorError(f"{self.describe()}: state field 'empty' must be an array "
                                f"with no rows")
        self._empty, self._out_known = empty, bool(state["out_known"])

    # ----------------------------------------------------------------- running
    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        return self._empty

    def _process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if x.dtype != self._model_dtype:
            x = self._cast(x)
        if not self._whole_chunk:
            y = self._per_sample(x)
        elif self.stateful:  # the chunk as one sequence (1, n, *S), from the carried state
            feed = self._feed
            feed[self._data_name] = x[None]
            res = self._run(feed)
            for name, state in zip(self._state_in, res[1:]):
                feed[name] = state
            y = res[0][0]
        else:                # the chunk as one batch (n, *S)
            self._feed[self._data_name] = x
            y = self._run(self._feed)[0]
        if y.shape[0] != n or not self._out_known:
            self._check_output(y, n)
        return y

    def _check_output(self, y: np.ndarray, n: int) -> None:
        if y.shape[0] != n:
            raise self._model_fail(f"output '{self._out_name}' has {y.shape[0]} rows for "
                                   f"{n} input samples (shape {y.shape})")
        self._empty = np.empty((0, *y.shape[1:]), dtype=y.dtype)
        self._out_known = True

    def _per_sample(self, x: np.ndarray) -> np.ndarray:
        """One run per sample (fixed batch/time of 1), carrying the states if stateful."""
        feed, data, lead, states = self._feed, self._data_name, self._lead, self._state_in
        out: np.ndarray | None = None
        for i in range(x.shape[0]):
            feed[data] = x[None, i:i + 1] if lead == 2 else x[i:i + 1]
            res = self._run(feed)
            for name, state in zip(states, res[1:]):
                feed[name] = state
            y = res[0]
            if out is None:
                if y.shape[:lead] != (1,) * lead:
                    raise self._model_fail(f"output '{self._out_name}' has shape {y.shape} for "
                                           f"one sample; expected leading dims {(1,) * lead}")
                out = np.empty((x.shape[0], *y.shape[lead:]), dtype=y.dtype)
            out[i] = y.reshape(out.shape[1:])
        assert out is not None
        return out

    @property
    def state(self) -> list[np.ndarray]:
        """The current recurrent state(s), one array per state input (copies)."""
        return [self._feed[name].copy() for name in self._state_in]


class WindowedInference(_OnnxOperator):
    """Run an ONNX model on sliding windows of a stream; the output is a new, slower stream.

    With ``W = window_size`` and ``hop = W - window_overlap``, a window ends at every input sample
    with global index ``e = W - 1 + m * hop`` (m = 0, 1, ...), exactly like ``FourierTransform``
    without upsampling, and the model gets ``x[e - W + 1 : e + 1]`` as one batch row
    ``(W, *S)`` (or ``(*S, W)`` with ``channels_first=True``, the layout of a PyTorch ``Conv1d``
    export). ``new_timeline = True``: each call returns only the rows of the windows completed
    in that chunk, and ``emitted`` holds the index in the chunk of each window's last sample, so
    the graph stamps a prediction with the time of the last sample of its window.

    All windows completed by one chunk run in ONE ``run`` call when the model's batch dimension
    is dynamic, else one call per window. A static window dimension of the model must equal
    ``window_size`` (checked at construction). ``output_shape`` reshapes each model output row
    (``(N, *O)`` -> ``(N, *output_shape)``, the sizes must match); by default rows keep the
    model's shape ``O``.

    Streaming: the last ``W - 1`` samples and the hop phase are carried (in the model's dtype).
    The seed's ``WindowedInference('model.onnx', 'model_input', ...)`` argument order is
    accepted and serialised in contract order ``(input, model)``.
    """

    new_timeline = True

    def __init__(self, input: str, model: str, name: str | None = None, *, window_size: int,
                 window_overlap: int = 0, output_shape: list[int] | None = None,
                 channels_first: bool = False, input_name: str | None = None,
                 output_name: str | None = None, threads: int = 1,
                 base_dir: str | None = None) -> None:
        input, model = _seed_order(input, model)
        super().__init__([input], name)
        self.input = input
        self.window_size = self.check_int("window_size", window_size, minimum=1)
        self.window_overlap = self.check_int("window_overlap", window_overlap, minimum=0)
        if self.window_overlap >= self.window_size:
            raise self._fail("window_overlap", f"must be < window_size ({self.window_size}), "
                                               f"got {window_overlap!r}")
        self.channels_first = self.check_bool("channels_first", channels_first)
        if output_shape is not None:
            if not isinstance(output_shape, (list, tuple)) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 1
                    for d in output_shape):
                raise self._fail("output_shape", f"must be a list of positive integers, "
                                                 f"got {output_shape!r}")
            output_shape = tuple(output_shape)
        self.output_shape: tuple[int, ...] | None = output_shape
        self.hop: int = self.window_size - self.window_overlap
        self._load(model, base_dir, threads)
        ins, outs = list(self._inputs), list(self._outputs)
        data = self._pick("input_name", input_name, ins, "input") if input_name is not None \
            else ins[0]
        if len(ins) != 1:
            raise self._model_fail(f"the model has {len(ins)} inputs ({', '.join(ins)}) but "
                                   f"WindowedInference feeds exactly one")
        out = self._pick("output_name", output_name, outs, "output") if output_name is not None \
            else outs[0]
        self.input_name, self.output_name = input_name, output_name
        self._data_name, self._out_name, self._fetch = data, out, [out]
        self._model_dtype = self._data_type(data)
        self._plan_layout()
        self.reset()

    def _plan_layout(self) -> None:
        shape = list(self._inputs[self._data_name].shape)
        label = f"input '{self._data_name}' has shape {_fmt(shape)}"
        if len(shape) < 2 or (not _dynamic(shape[0]) and shape[0] != 1):
            raise self._model_fail(f"{label}; WindowedInference needs (batch, window, ...) with "
                                   f"a batch dimension that is dynamic or 1")
        if self.channels_first and len(shape) < 3:
            raise self._model_fail(f"{label}; channels_first needs (batch, ..., window)")
        t = len(shape) - 1 if self.channels_first else 1
        if not _dynamic(shape[t]) and shape[t] != self.window_size:
            raise self._model_fail(f"{label}, i.e. windows of {shape[t]} samples, but "
                                   f"window_size is {self.window_size}")
        self._batched = _dynamic(shape[0])
        self._model_sample: tuple[Dim, ...] = tuple(shape[2:] if not self.channels_first
                                                    else shape[1:-1])
        out = list(self._outputs[self._out_name].shape)
        if not out:
            raise self._model_fail(f"output '{self._out_name}' is a scalar; it must start with "
                                   f"the batch dimension")
        self._out_model: tuple[Dim, ...] = tuple(out[1:])
        if self.output_shape is not None and not any(_dynamic(d) for d in self._out_model):
            self._reshape_check(tuple(int(d) for d in self._out_model))  # type: ignore[arg-type]

    def _reshape_check(self, rows: tuple[int, ...]) -> None:
        """Raise unless a model output row of shape ``rows`` can be reshaped to output_shape."""
        assert self.output_shape is not None
        if math.prod(rows) != math.prod(self.output_shape):
            raise self._model_fail(
                f"output '{self._out_name}' rows have shape {_fmt(rows)} "
                f"({math.prod(rows)} values, model output shape "
                f"{_fmt(self._outputs[self._out_name].shape)}), which cannot be reshaped to "
                f"output_shape {_fmt(self.output_shape)} ({math.prod(self.output_shape)} values)")

    def reset(self) -> None:
        super().reset()
        self._buf: np.ndarray | None = None  # samples live in _buf[:_fill]; the last W-1 matter
        self._fill = 0
        self._next = self.window_size        # samples still needed to complete a window
        row = self.output_shape if self.output_shape is not None else tuple(
            0 if _dynamic(d) else d for d in self._out_model)
        self._empty = np.empty((0, *row), dtype=np.float32)
        self._out_known = False
        self._feed: dict[str, np.ndarray] = {}

    def _check_input(self, x: np.ndarray) -> None:
        super()._check_input(x)
        if x.dtype.kind != "f":
            self._cast(x)  # raises the dtype error

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        # Room for many hops: the carried W-1 samples are moved to the front only when the
        # buffer is full, not after every window (about 1 MiB at most, 4096 rows at most).
        W, hop, sample = self.window_size, self.hop, x.shape[1:]
        rows = max(4 * (W + hop), min(4096, (1 << 18) // max(1, math.prod(sample))))
        self._buf = np.empty((rows, *sample), dtype=self._model_dtype)

    def _state_keys(self) -> tuple[str, ...]:
        return ("carried", "next", "empty", "out_known")

    def _export_state(self) -> dict[str, Any]:
        """The carried samples (not the buffer's spare room), the hop phase and the output
        row shape learnt so far."""
        return {"carried": self._buf[:self._fill], "next": self._next,
                "empty": self._empty, "out_known": self._out_known}

    def _import_state(self, state: dict[str, Any]) -> None:
        carried, nxt, empty = state["carried"], state["next"], state["empty"]
        buf = self._buf
        assert buf is not None
        if not isinstance(carried, np.ndarray) or carried.shape[1:] != buf.shape[1:] \
                or len(carried) > len(buf):
            raise OperatorError(f"{self.describe()}: state field 'carried' must hold at most "
                                f"{len(buf)} samples of shape {buf.shape[1:]}")
        if isinstance(nxt, bool) or not isinstance(nxt, int) or not 0 < nxt <= self.window_size:
            raise OperatorError(f"{self.describe()}: state field 'next' must be an integer in "
                                f"1..{self.window_size}, got {nxt!r}")
        if not isinstance(empty, np.ndarray) or empty.shape[:1] != (0,):
            raise OperatorError(f"{self.describe()}: state field 'empty' must be an array "
                                f"with no rows")
        buf[:len(carried)] = carried
        self._fill, self._next = len(carried), nxt
        self._empty, self._out_known = empty, bool(state["out_known"])

    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        self.emitted = _NO_ROWS
        return self._empty

    def _process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        buf, fill = self._buf, self._fill
        assert buf is not None
        if fill + n > buf.shape[0]:             # full: keep only what a window can still need
            keep = min(fill, self.window_size - 1)
            buf[:keep] = buf[fill - keep:fill]
            fill = self._fill = keep
            if fill + n > buf.shape[0]:         # a huge chunk: window a concatenated copy
                return self._complete_windows(
                    np.concatenate([buf[:fill], x.astype(self._model_dtype, copy=False)]), fill)
        buf[fill:fill + n] = x
        if n < self._next:                      # fast path: no window completes
            self._fill = fill + n
            self._next -= n
            self.emitted = _NO_ROWS
            return self._empty
        return self._complete_windows(buf, fill, fill + n)

    def _complete_windows(self, data: np.ndarray, fill: int, end: int | None = None
                          ) -> np.ndarray:
        """Run the windows completed in ``data[:end]``, whose first ``fill`` rows are carried."""
        W, hop = self.window_size, self.hop
        L = len(data) if end is None else end
        first_end = fill + self._next - 1       # index in data of the next window's end
        k = (L - 1 - first_end) // hop + 1      # windows completed by this chunk
        start = first_end - W + 1
        if k == 1:                              # the usual streaming case: a contiguous slice
            frames = data[start:start + W][None]
        else:
            frames = np.moveaxis(
                sliding_window_view(data[:L], W, axis=0)[start:start + (k - 1) * hop + 1:hop],
                -1, 1)
        if self.channels_first:
            frames = np.moveaxis(frames, 1, -1)
        y = self._infer(frames, k)
        self._next = first_end + k * hop - (L - 1)
        if end is None:                         # concatenated: carry the last W-1 samples
            keep = min(L, W - 1)
            self._buf[:keep] = data[L - keep:L]  # type: ignore[index]
            self._fill = keep
        else:
            self._fill = L
        first = first_end - fill
        self.emitted = np.arange(first, first + (k - 1) * hop + 1, hop, dtype=np.intp)
        return y

    def _infer(self, frames: np.ndarray, k: int) -> np.ndarray:
        """Model rows for ``k`` windows: one batched call, or one call per window."""
        feed, data = self._feed, self._data_name
        if self._batched:
            feed[data] = frames
            y = self._run(feed)[0]
        else:
            rows = []
            for j in range(k):
                feed[data] = frames[j:j + 1]
                rows.append(self._run(feed)[0])
            y = np.concatenate(rows)
        if not self._out_known or y.shape[0] != k:
            self._check_output(y, k)
        if self.output_shape is not None:
            y = y.reshape((k, *self.output_shape))
        return y

    def _check_output(self, y: np.ndarray, k: int) -> None:
        if y.ndim == 0 or y.shape[0] != k:
            raise self._model_fail(f"output '{self._out_name}' has shape {y.shape} for {k} "
                                   f"window(s); expected {k} rows")
        row = y.shape[1:]
        if self.output_shape is not None:
            self._reshape_check(row)
            row = self.output_shape
        self._empty = np.empty((0, *row), dtype=y.dtype)
        self._out_known = True


MODEL_OPERATORS = ("Inference", "WindowedInference")


def with_model_defaults(spec: Mapping[str, Any], threads: int | None,
                        base_dir: str | None) -> dict[str, Any]:
    """A copy of an operator spec where model operators get ``threads`` and ``base_dir`` (the
    directory relative model paths resolve against) unless the spec sets them. The same as
    ``with_node_defaults(spec, threads=threads, base_dir=base_dir)``, kept for its callers."""
    return with_node_defaults(spec, threads=threads, base_dir=base_dir)
