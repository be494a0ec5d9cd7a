import { defineConfig } from "vite";

// The console holds no key and no token: every call goes through the console server on its own
// origin (/console, web/server/console.ts), which keeps the session in HTTP-only cookies.
export default defineConfig({
  root: "web",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  oxc: { jsx: { runtime: "automatic" } },
});
