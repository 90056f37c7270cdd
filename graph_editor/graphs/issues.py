"""What the validator answers: the problems found, and the types it could work out."""
from dataclasses import asdict, dataclass, field


@dataclass
class GraphIssue:
    code: str  # cycle, unknown_op, invalid_params, dtype_mismatch, shape_mismatch, ... (validate.py lists them)
    message: str  # names the node, port or edge and says what to change
    node: str | None = None
    port: str | None = None  # "<node id>.<port name>"
    edge: int | None = None  # index into spec["edges"]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class GraphCheck:
    errors: list[GraphIssue] = field(default_factory=list)
    # "<node>.<port>" -> {"datatype": "FP32", "shape": ["batch", 64]}: symbolic dims by name, unknown -1.
    ports: dict[str, dict] = field(default_factory=dict)
    # The graph's signature, [{name, datatype, shape}] as KServe clients send them (-1: any size).
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors
