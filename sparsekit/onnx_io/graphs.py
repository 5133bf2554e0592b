"""Walk an ONNX graph and its If/Loop/Scan subgraphs (bounded depth)."""

from __future__ import annotations

from sparsekit.errors import OnnxModelError


MAX_SUBGRAPH_DEPTH = 16
"""Most levels of If/Loop/Scan subgraphs followed (real models nest 1-3)."""


def iter_graphs(graph, path: str = "", depth: int = 0):
    """Yield ``(path, graph)`` for ``graph`` and every subgraph of its nodes' GRAPH/GRAPHS
    attributes, depth first; ``path`` is "" for the main graph, else ``node.attr`` segments joined
    by ``/`` (``repeat.body``, ``branch.then_branch/inner.else_branch``; ``node.attr[i]`` for
    GRAPHS).

    Raises:
        OnnxModelError: subgraphs nested deeper than :data:`MAX_SUBGRAPH_DEPTH`.
    """
    yield path, graph
    for node, attr_path, sub in subgraphs_of(graph, path):
        if depth + 1 > MAX_SUBGRAPH_DEPTH:
            raise OnnxModelError(f"subgraph '{attr_path}' is nested more than {MAX_SUBGRAPH_DEPTH} levels deep", "flatten the control flow (e.g. with onnxsim or onnx-graphsurgeon) before checking")
        yield from iter_graphs(sub, attr_path, depth + 1)


def subgraphs_of(graph, path: str = ""):
    """Yield ``(node, subgraph path, subgraph)`` for the GRAPH/GRAPHS attributes of ``graph``'s nodes."""
    for i, node in enumerate(graph.node):
        label = node.name or f"{node.op_type}_{i}"
        prefix = f"{path}/{label}" if path else label
        for attr in node.attribute:
            if attr.HasField("g"):
                yield node, f"{prefix}.{attr.name}", attr.g
            for j, sub in enumerate(attr.graphs):
                yield node, f"{prefix}.{attr.name}[{j}]", sub


def replace_nodes(graph, nodes, renamed: dict[str, str] | None = None) -> None:
    """Make ``nodes`` the node list of ``graph`` (in that order), first pointing every input named
    in ``renamed`` (old name -> new name) at its new name. ``nodes`` may be a filtered view of
    ``graph.node``: it is copied before the graph's list is cleared."""
    nodes = list(nodes)
    for node in nodes:
        for i, name in enumerate(node.input):
            if renamed and name in renamed:
                node.input[i] = renamed[name]
    del graph.node[:]
    graph.node.extend(nodes)
