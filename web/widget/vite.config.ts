import { defineConfig } from "vite";

// The widget embed: one self-contained script, web/dist/widget.js, served by the gateway at
// /widget.js. Built after the admin client (which empties web/dist), so it keeps what is there.
export default defineConfig({
  build: {
    outDir: "../dist",
    emptyOutDir: false,
    sourcemap: false,
    lib: { entry: "widget.ts", formats: ["iife"], name: "GatehouseChat", fileName: () => "widget.js" },
  },
  root: "web/widget",
});
