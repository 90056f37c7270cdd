// Live deployment states: pushed over a websocket, with polling of the REST API as fallback.
(function () {
  const table = document.getElementById("deployments");
  if (!table) return;
  const LABELS = { pending: "Pending", loading: "Loading", ready: "Ready", failed: "Failed",
                   unloading: "Undeploying", undeployed: "Undeployed" };

  function apply(d) {
    const row = table.querySelector(`tr[data-deployment="${d.id}"]`);
    if (!row) return;
    const badge = row.querySelector("[data-state-badge]");
    badge.className = `badge state-${d.state}`;
    badge.textContent = d.state_label || LABELS[d.state] || d.state;
    row.querySelector("[data-error]").textContent = d.error || "";
    row.querySelector("[data-server]").textContent = d.server || "–";
    row.querySelector("[data-load]").textContent = d.load_seconds ? `${d.load_seconds.toFixed(2)} s` : "–";
    if (d.state === "undeployed") row.classList.add("gone");
  }

  function unsettled() {
    return [...table.querySelectorAll("tr[data-deployment]")].filter((row) => {
      const state = row.querySelector("[data-state-badge]").className;
      return /state-(pending|loading|unloading)/.test(state);
    });
  }

  let polling = null;
  function poll() {
    if (polling) return;
    polling = setInterval(async () => {
      const rows = unsettled();
      if (!rows.length) return;
      for (const row of rows) {
        const response = await fetch(`/api/v1/deployments/${row.dataset.deployment}`, { credentials: "same-origin" });
        if (response.ok) apply(await response.json());
      }
    }, 2000);
  }

  try {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/tenants/${window.PLATFORM_TENANT}/deployments/`);
    socket.onmessage = (event) => apply(JSON.parse(event.data));
    socket.onclose = poll;
    socket.onerror = poll;
    // Catch changes that happened between rendering and the socket opening.
    socket.onopen = () => setTimeout(() => unsettled().length && poll(), 3000);
  } catch (error) {
    poll();
  }
})();
