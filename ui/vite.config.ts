import { defineConfig } from "vite";

// The build goes into the Python package: the API resolver serves it at `/` and `/assets/*`,
// locally and behind API Gateway. `base: "./"` keeps every URL relative, so the UI works
// under an API Gateway stage prefix (/Prod/) as well as at the root.
export default defineConfig({
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "../layers/core/stratoflow/api/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000, // elkjs (the graph layout) is one large module, loaded in a worker
  },
  worker: { format: "es" },
});
