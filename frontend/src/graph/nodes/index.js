// One component per node kind, defined once at module level so React Flow never sees a new
// nodeTypes object (which would remount every node).
import InputNode from "./InputNode.jsx";
import ModelNode from "./ModelNode.jsx";
import OpNode from "./OpNode.jsx";
import OutputNode from "./OutputNode.jsx";
import SwitchNode from "./SwitchNode.jsx";

export const nodeTypes = { input: InputNode, output: OutputNode, model: ModelNode, op: OpNode, switch: SwitchNode };
