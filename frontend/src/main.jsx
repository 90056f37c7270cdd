import { createRoot } from "react-dom/client";
import UsageChart from "./UsageChart.jsx";
import { mountBillingCharts } from "./billing/mount.jsx";
import { mountGraphEditors } from "./graph/mount.jsx";
import "./platform.css";

function mountAll() {
  document.querySelectorAll("[data-usage-chart]").forEach((element) => {
    const minutes = Number(new URL(element.dataset.source, window.location.href).searchParams.get("minutes") || 60);
    createRoot(element).render(<UsageChart source={element.dataset.source} minutes={minutes} />);
  });
  mountGraphEditors();
  mountBillingCharts();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
