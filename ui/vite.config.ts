// The dashboard's build: one page under /ui/, its scripts and styles hashed into
// dist/assets, nothing loaded from elsewhere. `npm run build` writes dist/, which is
// committed and embedded in the binary by crates/dashboard.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` beside `skein server` on its default port.
    proxy: { "/v1": "http://127.0.0.1:8080", "/metrics": "http://127.0.0.1:8080" },
  },
});
