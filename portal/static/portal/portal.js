// Small progressive enhancements for the portal pages; every page works without them.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="#selector">.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      // Without a secure context there is no clipboard API: select the text for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand && document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });

  // Destructive forms ask first: <form data-confirm="...">.
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Live deployment states: pushed over a websocket; polled from the REST API while the
  // websocket is unavailable.
  const tenant = document.body.dataset.tenant;
  if (!tenant || !document.querySelector("[data-deployment]")) return;

  const LABELS = { pending: "Pending", loading: "Loading", ready: "Ready", cold: "Scaled to zero", failed: "Failed",
                   unloading: "Undeploying", undeployed: "Undeployed" };
  const UNSETTLED = new Set(["pending", "loading", "unloading"]);
  const indicator = document.querySelector("[data-live-indicator]");

  function setLive(mode) {
    if (!indicator) return;
    indicator.classList.toggle("connected", mode === "connected");
    indicator.classList.toggle("polling", mode === "polling");
    indicator.querySelector("[data-live-label]").textContent = mode === "connected" ? "Live" : "Refreshing every 2 s";
  }

  function apply(d) {
    document.querySelectorAll(`[data-deployment="${d.id}"]`).forEach((row) => {
      row.dataset.state = d.state;
      const badge = row.querySelector("[data-state-badge]");
      if (badge) {
        badge.className = `badge state-${d.state}`;
        badge.title = d.error || d.state_label || LABELS[d.state] || d.state;
        badge.querySelector("[data-state-label]").textContent = d.state_label || LABELS[d.state] || d.state;
      }
      const set = (selector, text) => { const el = row.querySelector(selector); if (el) el.textContent = text; };
      set("[data-error]", d.error || "");
      // The websocket sends the servers of the ready replicas; the REST API sends every replica.
      const servers = Array.isArray(d.replicas) ? d.replicas
        : Array.isArray(d.placement) ? d.placement.filter((r) => r.state === "ready").map((r) => r.server) : null;
      set("[data-server]", (servers ? servers.join(", ") : d.server) || "–");
      if (servers) set("[data-replicas-ready]", String(servers.length));
      if (d.instances !== undefined) {
        row.querySelectorAll("[data-instances]").forEach((el) => {
          el.textContent = String(d.state === "cold" ? 0 : d.instances);
        });
      }
      set("[data-load]", d.load_seconds ? `${Number(d.load_seconds).toFixed(2)} s` : "–");
      row.querySelectorAll("[data-show-when]").forEach((el) => { el.hidden = el.dataset.showWhen !== d.state; });
      row.querySelectorAll("[data-hide-when]").forEach((el) => { el.hidden = el.dataset.hideWhen === d.state; });
      row.classList.toggle("gone", d.state === "undeployed");
    });
  }

  function unsettledIds() {
    const ids = new Set();
    document.querySelectorAll("[data-deployment]").forEach((row) => {
      const badge = row.querySelector("[data-state-badge]");
      const state = row.dataset.state || (badge && badge.className.match(/state-(\w+)/)[1]);
      if (UNSETTLED.has(state)) ids.add(row.dataset.deployment);
    });
    return [...ids];
  }

  let pollTimer = null;
  function startPolling() {
    if (pollTimer) return;
    setLive("polling");
    pollTimer = setInterval(async () => {
      for (const id of unsettledIds()) {
        try {
          const response = await fetch(`/api/v1/deployments/${id}`, { credentials: "same-origin",
                                                                     headers: { Accept: "application/json" } });
          if (response.ok) apply(await response.json());
          else if (response.status === 404) apply({ id, state: "undeployed" });
        } catch (error) { /* offline for a moment: the next tick tries again */ }
      }
    }, 2000);
  }
  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  let retryDelay = 1000;
  function connect() {
    if (!("WebSocket" in window)) { startPolling(); return; }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${location.host}/ws/deployments/?tenant=${encodeURIComponent(tenant)}`);
    } catch (error) {
      startPolling();
      return;
    }
    socket.onopen = () => { retryDelay = 1000; stopPolling(); setLive("connected"); };
    socket.onmessage = (event) => apply(JSON.parse(event.data));
    socket.onclose = () => {
      startPolling();
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    };
  }
  connect();
})();
