import { defineConfig } from "vite";

// The control plane serves dist/ at /static/ (DASHBOARD_DIR). Hashed files land in
// dist/assets/, which the server caches as immutable; index.html is revalidated.
export default defineConfig({
  base: "/static/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a running `make run` (Envoy at :8000).
    proxy: {
      "/v1": "http://127.0.0.1:8000",
    },
  },
});
