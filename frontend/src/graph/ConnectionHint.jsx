import { Panel, useConnection } from "@xyflow/react";

/** The two ends of a connection being dragged, whichever end it started from. */
export function connectionEnds(fromHandle, toHandle) {
  if (!fromHandle || !toHandle) return null;
  if (fromHandle.type === toHandle.type) return { sameSide: true };
  const [source, target] = fromHandle.type === "source" ? [fromHandle, toHandle] : [toHandle, fromHandle];
  return { source: source.nodeId, sourceHandle: source.id, target: target.nodeId, targetHandle: target.id };
}

/** While a connection hovers over a port it may not join, says why. */
export default function ConnectionHint({ problemOf }) {
  const connection = useConnection();
  if (!connection.inProgress || !connection.toHandle || connection.isValid !== false) return null;
  return (
    <Panel position="bottom-center" className="gconnection-hint" data-connection-refused>
      {problemOf(connection.fromHandle, connection.toHandle)}
    </Panel>
  );
}
