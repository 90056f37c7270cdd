import { createRoot } from "react-dom/client";
import BillingChart from "./BillingChart.jsx";

/** <div data-billing-chart data-source="<id of a json_script>">: the page renders the data
 * with the page (no second request), the chart draws it. */
export function mountBillingCharts() {
  document.querySelectorAll("[data-billing-chart]").forEach((element) => {
    const script = document.getElementById(element.dataset.source);
    if (!script) return;
    element.classList.add("mounted");
    createRoot(element).render(<BillingChart data={JSON.parse(script.textContent)} />);
  });
}
