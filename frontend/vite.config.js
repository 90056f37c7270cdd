import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Django serves the bundle from frontend/dist through staticfiles, under fixed names.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    cssCodeSplit: false,
    rollupOptions: {
      input: "src/main.jsx",
      output: {
        entryFileNames: "platform.js",
        assetFileNames: (asset) => (asset.names?.[0] ?? asset.name ?? "").endsWith(".css") ? "platform.css" : "[name][extname]",
        format: "iife",
        name: "Platform",
      },
    },
  },
  test: { environment: "node" },
});
