import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // Edge functions import npm packages as `npm:name@range` (Deno); under vitest (Node) the same
    // package comes from node_modules.
    alias: [{ find: /^npm:((?:@[^/@]+\/)?[^/@]+)(?:@[^/]*)?(\/.*)?$/, replacement: "$1$2" }],
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
