"""Export diffad's seeded DDIM reconstruction D(X) to ONNX for the authors' engine si4onnx.

The exported graph is *exactly* :meth:`diffad.diffusion.chain.ReconstructionChain.run` for
one image: the same U-Net (in float64), the same chain of DDIM steps and constants (the
localizer's ``chain()``) and the same noise tensors from ``chain.draw_noise``. Everything that
does not depend on the input image (time embeddings and their MLP, the noise terms, the DDIM
scalars) is folded into float64 initializers, so the graph that si4onnx walks contains only
the ops it can trace (Conv, Relu, AveragePool, Resize, Concat, Add, Mul, ...) and its output
is D(X) with no randomness left in it.

What si4onnx adds on top of this output (its ``post_process`` list and ``threshold``) is the
DAL-Test selection map E = |K * (D(X) - X)| > λ: ``InputDiff`` (D(X) - X), ``AverageFilter(3)``
(3x3 mean with zero padding, always divided by 9) and ``Abs``; it is not part of the graph.

Needs the ``onnx`` package (``pip install onnx``) in diffad's environment; it is a benchmark
dependency only, never imported by the library.

Usage (stand-alone)::

    python benchmarks/onnx_export.py --size 8 --seed 0 --out /tmp/recon_d8.onnx
"""

from __future__ import annotations

import argparse
import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffad.diffusion.chain import ReconstructionChain

# The ONNX ops si4onnx 0.1.13 can trace (si4onnx/nn.py: layers, multi_input_layers,
# non_input_layers, random_layers). An exported graph with anything else is refused here,
# before si4onnx would fail deep inside a search.
SI4ONNX_OPS = frozenset(
    """Relu LeakyRelu Sigmoid Softmax Conv Gemm MaxPool AveragePool GlobalAveragePool
    ConvTranspose Transpose Shape Slice Exp Flatten ConstantOfShape EyeLike Reciprocal
    Reshape Resize Concat Add Sub Split BatchNormalization Mul MatMul Div ReduceSum Equal
    Greater Squeeze Unsqueeze Constant RandomNormalLike""".split()
)


class SeededReconstruction(nn.Module):
    """D(X) for one image with every constant fixed: a graph with a single input.

    Parameters
    ----------
    model : torch.nn.Module
        The trained ε-prediction U-Net; a float64 eval-mode copy is used.
    chain : ReconstructionChain
        The reconstruction (``DDPMLocalizer.chain()``).
    noises : sequence of torch.Tensor
        From ``chain.draw_noise`` (shape (1, C, H, W)).
    """

    def __init__(
        self,
        model: nn.Module,
        chain: ReconstructionChain,
        noises: Sequence[torch.Tensor],
    ) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).double().eval()
        self.chain = chain
        for i, n in enumerate(noises):
            self.register_buffer(f"noise{i}", n.detach().to(torch.float64).clone())
        self.n_noises = len(noises)
        # Time embeddings MLP(sinusoid(t)) are image-independent: computed once here in
        # float64 by the model's own code and served from buffers, so the graph carries no
        # Sin/Cos/Cast (which si4onnx cannot trace) and the values match diffad bit for bit.
        with torch.no_grad():
            for t in chain.timesteps:
                emb = self.model.time_embedding(t, 1, torch.device("cpu"))
                self.register_buffer(f"emb{t}", emb.clone())
        self.model.time_embedding = self._cached_embedding

    def _cached_embedding(self, t: int, batch: int, device: torch.device) -> torch.Tensor:
        if batch != 1:
            raise ValueError(f"the exported reconstruction takes one image, got {batch}")
        return getattr(self, f"emb{int(t)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noises = [getattr(self, f"noise{i}") for i in range(self.n_noises)]
        # The library's own chain: the exported graph is its trace, not a re-implementation.
        return self.chain.run(self.model, x, noises)


def _constants_to_initializers(model_proto) -> None:
    """Turn every Constant node into an initializer and drop Identity nodes (in place).

    si4onnx's ``Constant`` layer only reads float32 and int64 payloads, while a float64 graph
    carries float64 scalars (the DDIM coefficients); as initializers they are read by
    ``numpy_helper.to_array`` at full precision.
    """
    from onnx import numpy_helper

    graph = model_proto.graph
    keep = []
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and len(node.attribute) == 1
            and node.attribute[0].name == "value"
        ):
            arr = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(np.asarray(arr), node.output[0]))
        else:
            keep.append(node)
    # Identity nodes (the exporter emits them for initializers shared by the five U-Net
    # calls) are not traceable by si4onnx either: consumers read the source directly.
    alias = {n.output[0]: n.input[0] for n in keep if n.op_type == "Identity"}
    outputs = {o.name for o in graph.output}
    if alias.keys() & outputs:
        raise ValueError("an Identity node produces a graph output; cannot drop it")
    keep = [n for n in keep if n.op_type != "Identity"]
    for node in keep:
        for i, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[i] = name
    del graph.node[:]
    graph.node.extend(keep)


def _nest_intervals_order(model_proto) -> None:
    """Re-order the nodes so that si4onnx's memoisation is valid (in place).

    si4onnx (``NN._search_start_node``) resumes a trace after the LAST node, in graph order,
    whose cached interval contains the new z, and reuses every earlier cached node. That is
    only right if each node's interval is contained in the intervals of all earlier
    z-dependent nodes. torch's exporter emits the DDIM skip term c_x·x_t after the U-Net call
    on x_t; its interval is wider than the U-Net's, so si4onnx resumed there with stale ReLU
    patterns and failed ``assert l <= z <= u`` (measured on this benchmark's graphs). We
    re-sort topologically, taking among the ready nodes the one with the fewest ReLU
    ancestors: nodes that depend on fewer decisions (wider intervals) come first. The graph
    computes the same function; the check below proves the nesting on the final order.
    """
    graph = model_proto.graph
    nodes = list(graph.node)
    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output}
    relu_anc: list[frozenset] = [frozenset()] * len(nodes)
    z_dep = [False] * len(nodes)
    inputs = {i.name for i in graph.input}
    # nodes are in a valid topological order already, so one forward pass fills the sets
    for i, n in enumerate(nodes):
        anc: set = set()
        dep = False
        for name in n.input:
            if name in inputs:
                dep = True
            j = produced_by.get(name)
            if j is not None:
                anc |= relu_anc[j]
                dep = dep or z_dep[j]
        if n.op_type in ("Relu", "LeakyRelu", "MaxPool") and dep:
            anc.add(i)
        relu_anc[i] = frozenset(anc)
        z_dep[i] = dep
    import heapq

    deps = [{produced_by[x] for x in n.input if x in produced_by} for n in nodes]
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    missing = [len(d) for d in deps]
    ready = [(len(relu_anc[i]), i) for i in range(len(nodes)) if missing[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for k in users[i]:
            missing[k] -= 1
            if missing[k] == 0:
                heapq.heappush(ready, (len(relu_anc[k]), k))
    if len(order) != len(nodes):
        raise ValueError("the exported graph is not a DAG")
    seen: frozenset = frozenset()
    for i in order:
        if z_dep[i]:
            if not seen <= relu_anc[i]:
                raise ValueError(
                    "cannot order this graph so that si4onnx's memoisation is valid "
                    f"(node {nodes[i].name} does not depend on every earlier decision)"
                )
            seen = relu_anc[i]
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def canonical_noise(
    shape: Sequence[int], chain: ReconstructionChain, seed: int
) -> list[torch.Tensor]:
    """The noise of a ``DDPMLocalizer(seed=seed)`` (its maps and its region test), as
    float64 tensors.

    ``chain.draw_noise`` is called with its default float32 dtype, exactly as the localiser
    calls it for its ``seed`` (the noise draws of its ``region_map_definition()``, which
    ``SelectiveTest`` traces), and then widened: the constants in the exported graph are the
    float32-rounded draws, as in diffad's float64 tracer.
    """
    return [n.to(torch.float64) for n in chain.draw_noise(shape, seed)]


def export_reconstruction(
    model: nn.Module,
    chain: ReconstructionChain,
    image_shape: Sequence[int],
    seed: int,
    path: str | Path | None = None,
    opset: int = 12,
) -> bytes:
    """ONNX bytes (and optionally a file) of the seeded reconstruction of one image.

    Parameters
    ----------
    model : torch.nn.Module
        The trained U-Net.
    chain : ReconstructionChain
        The reconstruction (``DDPMLocalizer.chain()``).
    image_shape : sequence of int
        (C, H, W) of one image.
    seed : int
        Reconstruction seed: the noise is :func:`canonical_noise`, the same draw a localiser
        with that ``seed`` (``loc.set_params(seed=...)``) reconstructs and tests with.
    path : str or Path, optional
        Also write the model there.
    opset : int
        ONNX opset of the export.

    Returns
    -------
    bytes
        The serialised ``onnx.ModelProto``.

    Raises
    ------
    ValueError
        If the exported graph contains an op si4onnx cannot trace.
    """
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("exporting to ONNX needs the 'onnx' package: pip install onnx") from err
    shape = (1, *[int(s) for s in image_shape])
    noises = canonical_noise(shape, chain, seed)
    wrapper = SeededReconstruction(model, chain, noises).eval()
    dummy = torch.zeros(shape, dtype=torch.float64)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks in the U-Net are Python constants for a fixed-size export: expected
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (dummy,),
            buf,
            input_names=["x"],
            output_names=["recon"],
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buf.getvalue())
    _constants_to_initializers(proto)
    _nest_intervals_order(proto)
    bad = sorted({n.op_type for n in proto.graph.node} - SI4ONNX_OPS)
    if bad:
        raise ValueError(f"the exported graph has ops si4onnx 0.1.13 cannot trace: {bad}")
    data = proto.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def reference_reconstruction(
    model: nn.Module,
    chain: ReconstructionChain,
    images: np.ndarray,
    seed: int,
) -> np.ndarray:
    """diffad's float64 D(X) of one image (1, C, H, W) with the noise of ``seed``.

    This is what the exported graph must reproduce; computed by the library directly.
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float64))
    noises = canonical_noise(tuple(x.shape), chain, seed)
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return chain.run(m, x, noises).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="reconstruction-noise seed")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import si_models  # benchmarks/ is on sys.path when run as a script

    loc = si_models.get_localizer(args.size, args.train_steps)
    export_reconstruction(loc.model_, loc.chain(), loc.image_shape_, args.seed, path=args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
