import { createRoot } from "react-dom/client";
import GraphEditor from "./GraphEditor.jsx";
import { createApi } from "./api.js";

/** <div data-graph-editor data-graph-id data-graph-name data-can-edit data-csrf-token data-api-root
 * data-gateway-url data-keys-url> */
export function mountGraphEditors() {
  document.querySelectorAll("[data-graph-editor]").forEach((element) => {
    const { graphId, graphName, canEdit, csrfToken, apiRoot, gatewayUrl, keysUrl } = element.dataset;
    const api = createApi({ root: apiRoot || "/api/v1", csrfToken });
    element.classList.add("mounted");
    createRoot(element).render(
      <GraphEditor api={api} graphId={Number(graphId)} graphName={graphName} canEdit={canEdit === "true"}
        gatewayUrl={gatewayUrl || window.location.origin} keysUrl={keysUrl || "/keys/"} />,
    );
  });
}
