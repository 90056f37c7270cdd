import { useEffect, useRef, useState } from "react";

const RETRY_MS = 1000;
const RETRY_MAX_MS = 30000;

/**
 * Deployment state changes pushed by the portal's websocket (/ws/deployments/, the one the
 * Deployments page uses), each handed to `onEvent`. Returns "live" while the socket is open,
 * else "polling": the caller then re-reads over REST. It reconnects with a growing delay.
 */
export function useDeploymentEvents(onEvent, { enabled }) {
  const [mode, setMode] = useState("polling");
  const handler = useRef(onEvent);
  handler.current = onEvent;

  useEffect(() => {
    if (!enabled || typeof WebSocket === "undefined") return undefined;
    let socket = null;
    let stopped = false;
    let timer = null;
    let delay = RETRY_MS;
    const tenant = document.body.dataset.tenant;
    const url = `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}/ws/deployments/`
      + (tenant ? `?tenant=${encodeURIComponent(tenant)}` : "");
    function connect() {
      try {
        socket = new WebSocket(url);
      } catch {
        setMode("polling");
        return;
      }
      socket.onopen = () => {
        delay = RETRY_MS;
        setMode("live");
      };
      socket.onmessage = (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;
        }
        handler.current(event);
      };
      socket.onclose = () => {
        if (stopped) return;
        setMode("polling");
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      };
    }
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
    };
  }, [enabled]);
  return enabled ? mode : "off";
}
