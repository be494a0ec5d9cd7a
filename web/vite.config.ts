import { defineConfig } from "vite";

// The admin client holds no privileged key: at runtime it reads the public URL and anon key from
// /env.json, served by the gateway (or from VITE_SUPABASE_URL / VITE_SUPABASE_ANON_KEY at build).
export default defineConfig({
  root: "web",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  oxc: { jsx: { runtime: "automatic" } },
});
